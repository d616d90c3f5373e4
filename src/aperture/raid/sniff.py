"""What an attachment is, from its bytes (never from its name). Pure.

Attachments are kept as evidence and handed back only as downloads: never executed, unpacked or
rendered inline. What is accepted is a short allow-list (plain text, JSON, PDF, PNG, JPEG, GIF,
WebP); archives, executables, scripts, pickles and macro-carrying documents are refused by their
content, whatever they are called. A text-format (protocol 0/1) pickle is valid UTF-8, so it is
recognised by disassembling it with `pickletools.genops`, which reads opcodes and executes none.
"""

from __future__ import annotations

import json
import pickletools
import re
from dataclasses import dataclass

from aperture.core.errors import InvalidInput, UnsafeInput

# (signature, offset, what it is) for refused content.
REFUSED: tuple[tuple[bytes, int, str], ...] = (
    (b"PK\x03\x04", 0, "a ZIP archive (also .docx, .xlsx, .jar, .whl, torch .pt)"),
    (b"PK\x05\x06", 0, "a ZIP archive"),
    (b"PK\x07\x08", 0, "a ZIP archive"),
    (b"\x1f\x8b", 0, "a gzip archive"),
    (b"\x1f\x9d", 0, "a compress (.Z) archive"),
    (b"BZh", 0, "a bzip2 archive"),
    (b"\xfd7zXZ\x00", 0, "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"Rar!\x1a\x07", 0, "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", 0, "a Zstandard archive"),
    (b"\x04\x22\x4d\x18", 0, "an LZ4 archive"),
    (b"MSCF", 0, "a Microsoft cabinet archive"),
    (b"!<arch>\n", 0, "an ar archive (.deb, .a)"),
    (b"\xed\xab\xee\xdb", 0, "an RPM package"),
    (b"ustar", 257, "a tar archive"),
    (b"CD001", 0x8001, "an ISO disc image"),
    (b"\x7fELF", 0, "an ELF executable"),
    (b"MZ", 0, "a Windows executable"),
    (b"\xfe\xed\xfa\xce", 0, "a Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", 0, "a Mach-O executable"),
    (b"\xce\xfa\xed\xfe", 0, "a Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", 0, "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", 0, "a Mach-O universal binary or Java class"),
    (b"\x00asm", 0, "a WebAssembly module"),
    (b"dex\n", 0, "an Android DEX executable"),
    (b"#!", 0, "a script"),
    (b"\x4c\x00\x00\x00\x01\x14\x02\x00", 0, "a Windows shortcut"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "an OLE compound document (may carry macros)"),
    (b"\x93NUMPY", 0, "a NumPy array file (may hold pickles)"),
)
PICKLE_PROTOCOLS = {2, 3, 4, 5}


@dataclass(frozen=True, slots=True)
class Sniffed:
    media_type: str
    what: str


ACCEPTED_HINT = "attach plain text, JSON, PDF, PNG, JPEG, GIF or WebP (archives, executables and pickles are refused)"


def _refuse(what: str) -> UnsafeInput:
    return UnsafeInput(f"the attachment is {what}: refused", hint=ACCEPTED_HINT)


def _is_text_pickle(data: bytes) -> bool:
    """A protocol 0/1 pickle: its opcodes disassemble to the end and stop at its last byte."""
    try:
        for opcode, _, position in pickletools.genops(data):
            if opcode.name == "STOP":
                return position is not None and position == len(data.rstrip(b"\r\n")) - 1
    except (ValueError, UnicodeDecodeError, EOFError, KeyError, IndexError):
        return False
    return False


def sniff(data: bytes) -> Sniffed:
    """The accepted type of an attachment, or UnsafeInput naming what it was found to be."""
    if not data:
        raise InvalidInput("the attachment is empty", hint="attach a file with content")
    for signature, offset, what in REFUSED:
        if data[offset : offset + len(signature)] == signature:
            raise _refuse(what)
    if data[0] == 0x80 and len(data) > 1 and data[1] in PICKLE_PROTOCOLS:
        raise _refuse("a Python pickle")
    if data.startswith(b"%PDF-"):
        return Sniffed("application/pdf", "PDF document")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image/png", "PNG image")
    if data.startswith(b"\xff\xd8\xff"):
        return Sniffed("image/jpeg", "JPEG image")
    if data.startswith((b"GIF87a", b"GIF89a")):
        return Sniffed("image/gif", "GIF image")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Sniffed("image/webp", "WebP image")
    if _is_text_pickle(data):
        raise _refuse("a Python pickle")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refuse("binary data of an unknown kind") from None
    if "\x00" in text or re.search(r"[\x01-\x08\x0e-\x1f]", text):
        raise _refuse("binary data of an unknown kind")
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            json.loads(text)
        except ValueError:
            return Sniffed("text/plain", "text")
        return Sniffed("application/json", "JSON")
    return Sniffed("text/plain", "text")


_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def display_name(name: str) -> str:
    """A file name fit to show (never used as a path): the last component, no control characters."""
    last = re.split(r"[/\\]", name.strip())[-1]
    cleaned = _UNSAFE_NAME.sub("", last).strip(". ")[:200]
    return cleaned or "attachment"
