"""A refusal in the use case's own words: the access service decides, the use case says what is missing.

`ask` is `AccessService.require` with the use case's wording. A caller who may not see the asset
gets `missing`, the very error the use case raises for a record that does not exist (forbidden
reads as absent: the same status and text); a caller who may see it gets `Forbidden(message,
hint)`, or, when the key's scopes were what refused, a message that says so; the anonymous public
is asked to sign in. `ask_instance` does the same for an instance-wide action.
"""

from __future__ import annotations

from collections.abc import Mapping

from aperture.access.domain import UNREGISTERED, Action, AssetRef, Caller, Decision
from aperture.access.service import AccessService
from aperture.core.errors import ApertureError, Forbidden, NotFound, Unauthenticated

Facts = Mapping[str, bool | int | str]


def ask(
    access: AccessService,
    caller: Caller,
    action: Action,
    asset: AssetRef,
    *,
    missing: NotFound,
    message: str,
    hint: str,
    facts: Facts | None = None,
) -> Decision:
    """Raise unless `caller` may do `action` on `asset` (decided, and audited, by the access service)."""
    try:
        return access.require(caller, action, asset, facts=dict(facts or {}))
    except NotFound:
        raise missing from None
    except Forbidden:
        raise _worded(access, caller, action, asset, message, hint, facts) from None


def ask_instance(
    access: AccessService, caller: Caller, action: Action, *, message: str, hint: str, facts: Facts | None = None
) -> Decision:
    """Raise unless `caller` may do the instance-wide `action` (refusals audited by the access service)."""
    try:
        return access.require_instance(caller, action, facts=facts)
    except Forbidden:
        raise _worded(access, caller, action, None, message, hint, facts) from None


def _worded(
    access: AccessService,
    caller: Caller,
    action: Action,
    asset: AssetRef | None,
    message: str,
    hint: str,
    facts: Facts | None,
) -> ApertureError:
    if caller.principal == UNREGISTERED and caller.key_id is None and not caller.session:
        return Unauthenticated(f"{message}; sign in first", hint="send an API key, or sign in")
    if "key-scope" in access.decide(caller, action, asset, facts=facts).reasons:
        return Forbidden(
            f"this key's scopes do not include {action.value}",
            hint=f"use a key issued with the scope {action.value} (or without scopes)",
        )
    return Forbidden(message, hint=hint)
