"""Sortable identifiers: UUIDv7 strings (time-ordered, so ids sort by creation)."""

from __future__ import annotations

import os
import time


def new_id(now_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562) string: 48-bit Unix milliseconds, then 74 random bits.

    Built from bytes rather than through uuid.UUID: every audit event takes one, and this is
    twice as fast with the same layout (version 7 in the high nibble of byte 6, variant 0b10).
    """
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = os.urandom(10)
    octets = (ms & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")
    octets += bytes((0x70 | (rand[0] & 0x0F), rand[1], 0x80 | (rand[2] & 0x3F))) + rand[3:]
    text = octets.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
