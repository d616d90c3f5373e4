"""One error vocabulary: every failure has a code, a message and a hint that names the fix.

HTTP maps `ApertureError.http_status` to a status and `{"error": {"code", "message", "hint"}}`;
the CLI maps `exit_code` to the process exit status. Expected negative outcomes (access refused,
a tier not granted) are results, not exceptions.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApertureError(Exception):
    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str = "", details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(ApertureError):
    """The caller sent something malformed: fix the input and retry."""

    code = "invalid_input"
    http_status = 422
    exit_code = 2


class UnsafeInput(InvalidInput):
    """An untrusted file was refused (pickle, traversal, oversize header, symlink escape)."""

    code = "unsafe_input"


class NotFound(ApertureError):
    code = "not_found"
    http_status = 404
    exit_code = 3


class Conflict(ApertureError):
    """The change clashes with existing state (a duplicate name:version, an existing instance)."""

    code = "conflict"
    http_status = 409
    exit_code = 4


class Unauthenticated(ApertureError):
    code = "unauthenticated"
    http_status = 401
    exit_code = 5


class Forbidden(ApertureError):
    code = "forbidden"
    http_status = 403
    exit_code = 6


class IntegrityFailure(ApertureError):
    """Stored data no longer matches its digest or signature: evidence of corruption or tampering."""

    code = "integrity_failure"
    http_status = 500
    exit_code = 7


class TooLarge(InvalidInput):
    code = "too_large"
    http_status = 413


class NotInitialised(ApertureError):
    code = "not_initialised"
    http_status = 503
    exit_code = 8


class Unavailable(ApertureError):
    """A service Aperture depends on (the database, Redis, a backend) cannot be reached."""

    code = "unavailable"
    http_status = 503
    exit_code = 9
