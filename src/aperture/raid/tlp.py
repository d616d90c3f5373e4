"""The Traffic Light Protocol 2.0 and who may see a RAID item. Pure: no I/O.

FIRST TLP 2.0 (authoritative from August 2022): five labels, `TLP:RED`, `TLP:AMBER+STRICT`,
`TLP:AMBER`, `TLP:GREEN`, `TLP:CLEAR`. The STIX 2.1 marking-definition ids are the official ones
of OASIS `cti-stix-common-objects` (extension-definition-specifications/tlp-2.0), checked by a test
against the table below. TLP 1.0 ids still circulate: they are accepted on import, never emitted.

Who sees an item (`visible`) is one rule; the store writes the same rule as a SQL condition, and a
property test keeps the two equal. What the caller's roles allow (the desk, the GREEN community)
and which model versions they may see are decided by the access service (Cedar); the rule combines
those answers with the item's label, its named recipients and its recipient organisations:

- every model version the item concerns must be one the viewer may see (clearance and
  need-to-know), whatever the label: nothing about a version reaches someone not cleared for it;
- `TLP:RED`: only the principals named on the item (no desk-wide, no organisation-wide access);
- `TLP:AMBER+STRICT`: the named, the RAID desk, and members of the recipient organisations;
- `TLP:AMBER`: the same, plus the recipient organisations' clients (organisations recorded with a
  recipient organisation as their parent);
- `TLP:GREEN`: the named, the desk and the community (principals of member and partner states'
  organisations, as Cedar decides), plus the recipient organisations;
- `TLP:CLEAR`: everyone, the anonymous public included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from aperture.core.errors import InvalidInput

TLP2_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_CREATED = "2022-10-01T00:00:00.000Z"


class Tlp(StrEnum):
    """The label's value as the TLP 2.0 STIX extension writes it (`tlp_2_0`)."""

    CLEAR = "clear"
    GREEN = "green"
    AMBER = "amber"
    AMBER_STRICT = "amber+strict"
    RED = "red"

    @property
    def label(self) -> str:
        """`TLP:AMBER+STRICT`: capitals, no spaces, never translated."""
        return "TLP:" + self.value.upper()

    @property
    def marking_id(self) -> str:
        return MARKING_IDS[self]

    @property
    def rank(self) -> int:
        """0 (CLEAR) to 4 (RED): higher is more restricted."""
        return _ORDER.index(self)

    def stricter(self, other: Tlp) -> Tlp:
        return self if self.rank >= other.rank else other


_ORDER = (Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED)

# The official STIX 2.1 marking-definition ids of TLP 2.0 (OASIS cti-stix-common-objects).
MARKING_IDS: dict[Tlp, str] = {
    Tlp.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
    Tlp.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    Tlp.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    Tlp.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    Tlp.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
}
BY_MARKING_ID = {marking: tlp for tlp, marking in MARKING_IDS.items()}

# TLP 1.0 ids (STIX 2.1 common objects, `stix2.TLP_*`): accepted on import, never emitted.
LEGACY_MARKING_IDS: dict[str, Tlp] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": Tlp.CLEAR,  # TLP:WHITE
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": Tlp.GREEN,
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": Tlp.AMBER,
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": Tlp.RED,
}


def parse_tlp(text: str) -> Tlp:
    """`TLP:AMBER+STRICT`, `amber+strict` or `AMBER+STRICT` -> Tlp.AMBER_STRICT."""
    raw = text.strip().upper().removeprefix("TLP:")
    for tlp in Tlp:
        if tlp.value.upper() == raw:
            return tlp
    raise InvalidInput(
        f"{text!r} is not a TLP 2.0 label", hint="use TLP:CLEAR, TLP:GREEN, TLP:AMBER, TLP:AMBER+STRICT or TLP:RED"
    )


def marking_definition(tlp: Tlp) -> dict[str, object]:
    """The official marking-definition object of a label, as OASIS publishes it."""
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": tlp.marking_id,
        "created": TLP2_CREATED,
        "name": tlp.label,
        "extensions": {TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": tlp.value}},
    }


@dataclass(frozen=True, slots=True)
class Audience:
    """Who an item is shared with: named principals and recipient organisations."""

    principals: frozenset[str] = frozenset()
    organisations: frozenset[str] = frozenset()

    def with_principals(self, names: Iterable[str]) -> Audience:
        return Audience(self.principals | frozenset(names), self.organisations)

    def with_organisations(self, names: Iterable[str]) -> Audience:
        return Audience(self.principals, self.organisations | frozenset(names))


@dataclass(frozen=True, slots=True)
class Viewer:
    """What the access service said about a caller, in the terms the rule needs.

    `principal` is None for the anonymous public. `hidden_versions` are the model versions (among
    those RAID items concern) the caller may not see."""

    principal: str | None
    organisation: str | None = None
    client_of: str | None = None  # the parent of the caller's organisation
    desk: bool = False
    community: bool = False
    hidden_versions: frozenset[str] = field(default_factory=frozenset)


ANONYMOUS_VIEWER = Viewer(principal=None)


def visible(tlp: Tlp, audience: Audience, versions: Iterable[str], viewer: Viewer) -> bool:
    """Whether `viewer` may see an item labelled `tlp`, shared with `audience`, concerning `versions`."""
    if any(version in viewer.hidden_versions for version in versions):
        return False
    if viewer.principal is not None and viewer.principal in audience.principals:
        return True
    if tlp is Tlp.CLEAR:
        return True
    if tlp is Tlp.RED:
        return False
    in_organisation = viewer.organisation is not None and viewer.organisation in audience.organisations
    if viewer.desk or in_organisation:
        return True
    if tlp is Tlp.AMBER_STRICT:
        return False
    client = viewer.client_of is not None and viewer.client_of in audience.organisations
    if tlp is Tlp.AMBER:
        return client
    return client or viewer.community  # GREEN


def email_banner(tlp: Tlp) -> str:
    """TLP 2.0 e-mail rule: the label goes in the subject and in the body before the information."""
    return f"{tlp.label}\n"
