"""Bounds on what people write: text, references and report receipts. Pure."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from aperture.core.errors import InvalidInput, TooLarge

RECEIPT_PREFIX = "rct"
RECEIPT_PATTERN = re.compile(r"^rct_[A-Za-z0-9_-]{43}$")
REF_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,62}$")

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_text(value: str | None, name: str, limit: int, *, required: bool = True) -> str:
    """Bounded, NUL- and control-free text, kept exactly as written otherwise (HTML stays text)."""
    text = (value or "").strip()
    if required and not text:
        raise InvalidInput(f"the {name} is empty", hint=f"give a {name} (1-{limit} characters)")
    if len(text) > limit:
        raise TooLarge(f"the {name} has {len(text)} characters; at most {limit}", hint=f"shorten the {name}")
    if _CONTROL.search(text):
        raise InvalidInput(f"the {name} holds control characters", hint="send plain text (newlines and tabs are fine)")
    return unicodedata.normalize("NFC", text)


def check_ref(value: str, what: str) -> str:
    ref = value.strip()
    if not REF_PATTERN.fullmatch(ref):
        raise InvalidInput(f"{value!r} is not a valid {what} reference", hint="ids are 1-63 letters, digits, ._:@/-")
    return ref


def receipt_hash(receipt: str) -> bytes:
    """Only the hash of a receipt is kept; it has 256 bits of entropy, so SHA-256 suffices."""
    return hashlib.sha256(receipt.encode("ascii")).digest()


def check_receipt(receipt: str) -> str:
    text = receipt.strip()
    if not RECEIPT_PATTERN.fullmatch(text):
        raise InvalidInput("that is not a report receipt", hint="use the rct_... receipt you were given")
    return text
