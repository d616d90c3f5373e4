"""The Cedar policy engine: the shipped `.cedar` files, parsed once, and one decision function.

The policy set is parsed once when the engine is built, and the entity store once per change of
the records it is built from (`Entities` handles): re-parsing either on every call is hundreds of
times slower. An operator reviews and changes the files in `aperture/access/policies/` (or points
`APERTURE_POLICY_DIR` at a copy); every policy carries an `@id`, which decisions cite as reasons.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from aperture.access.domain import Action
from aperture.core.errors import InvalidInput

ID_ANNOTATION = re.compile(r'@id\(\s*"([^"]+)"\s*\)')
ACTION_TYPE = "Aperture::Action"


def shipped_policy_texts() -> dict[str, str]:
    directory = resources.files("aperture.access") / "policies"
    return {
        entry.name: entry.read_text(encoding="utf-8") for entry in directory.iterdir() if entry.name.endswith(".cedar")
    }


def policy_texts_from(directory: Path) -> dict[str, str]:
    texts = {path.name: path.read_text(encoding="utf-8") for path in sorted(directory.glob("*.cedar"))}
    if not texts:
        raise InvalidInput(f"no .cedar files in {directory}", hint="copy aperture/access/policies/*.cedar there")
    return texts


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reasons: tuple[str, ...]
    errors: tuple[str, ...]


class PolicyEngine:
    """Parsed policies plus the `@id` of each, in file order."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        ordered = [texts[name] for name in sorted(texts)]
        combined = "\n".join(ordered)
        try:
            self.policies = cedarpy.PolicySet.from_str(combined)
            parsed = json.loads(cedarpy.policies_to_json_str(combined))
        except ValueError as error:
            raise InvalidInput(f"the Cedar policies do not parse: {error}", hint="fix the .cedar files") from None
        count = len(parsed.get("staticPolicies", {})) + len(parsed.get("templates", {}))
        ids = ID_ANNOTATION.findall(combined)
        if len(ids) != count or len(set(ids)) != len(ids):
            raise InvalidInput(
                f"every Cedar policy needs exactly one unique @id (found {len(ids)} ids for {count} policies)",
                hint='start each policy with @id("what-it-says")',
            )
        self.ids = {f"policy{index}": policy_id for index, policy_id in enumerate(ids)}
        self.files = dict(texts)
        self.version = hashlib.sha256(combined.encode("utf-8")).hexdigest()[:16]

    @classmethod
    def shipped(cls) -> PolicyEngine:
        return cls(shipped_policy_texts())

    @staticmethod
    def entities(records: Sequence[dict[str, Any]]) -> cedarpy.Entities:
        return cedarpy.Entities.from_json_str(json.dumps(records))

    @staticmethod
    def request(
        principal: str, action: Action, resource_type: str, resource: str, context: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "principal": {"type": "Aperture::Person", "id": principal},
            "action": {"type": ACTION_TYPE, "id": action.value},
            "resource": {"type": f"Aperture::{resource_type}", "id": resource},
            "context": context,
        }

    def decide(self, request: dict[str, Any], entities: cedarpy.Entities) -> Verdict:
        """Fail closed: an evaluation error anywhere denies, even if a permit matched (an erring
        `forbid` is skipped by Cedar, and must never be what lets a request through)."""
        result = cedarpy.is_authorized(request, self.policies, entities)
        diagnostics = result.diagnostics
        reasons = tuple(self.ids.get(reason, reason) for reason in diagnostics.reasons)
        errors = tuple(self._named(error) for error in diagnostics.errors)
        return Verdict(bool(result.allowed) and not errors, reasons, errors)

    def _named(self, error: str) -> str:
        return re.sub(r"`(policy\d+)`", lambda m: f"`{self.ids.get(m.group(1), m.group(1))}`", error)
