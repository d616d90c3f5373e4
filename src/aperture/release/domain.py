"""Release tiers and the controls each implies. Pure rules: no I/O.

The four tiers, from most to least open (seed 003's tiered, safety-anchored release; seed 000's
open source -> secure licensing stages):

- `open`: weights public under an open licence;
- `licensed`: weights only to vetted licensees under contract, each copy traceable;
- `hosted`: use through the gateway only, weights never leave;
- `secured`: the upper tier, internal research only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aperture.access.domain import SecurityLevel


class Tier(StrEnum):
    OPEN = "open"
    LICENSED = "licensed"
    HOSTED = "hosted"
    SECURED = "secured"

    @property
    def openness(self) -> int:
        """3 for open down to 0 for secured: higher is more open."""
        return _OPENNESS[self]

    def more_open_than(self, other: Tier) -> bool:
        return self.openness > other.openness

    @classmethod
    def parse(cls, text: str) -> Tier:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ValueError(f"unknown tier {text!r}: use one of {', '.join(t.value for t in TIERS)}") from None


_OPENNESS = {Tier.OPEN: 3, Tier.LICENSED: 2, Tier.HOSTED: 1, Tier.SECURED: 0}
# Most open first.
TIERS: tuple[Tier, ...] = (Tier.OPEN, Tier.LICENSED, Tier.HOSTED, Tier.SECURED)


class WeightHolders(StrEnum):
    ANYONE = "anyone"
    LICENSEES = "vetted licensees under contract, and staff with a grant"
    STAFF = "staff with a time-limited grant"
    PROGRAMME = "cleared staff of the model's programme only"


@dataclass(frozen=True, slots=True)
class TierControls:
    """What a tier implies for the rest of the platform (access, vault, gateway, licensing)."""

    tier: Tier
    minimum_security_level: SecurityLevel
    weight_holders: WeightHolders
    gateway_may_serve: bool  # to callers outside the institution, without a per-organisation grant
    weights_leave_institution: bool
    tamper_resistance_required: bool  # when any risk domain is notable or above (policy decides)
    reversible: bool  # opening weights cannot be undone

    def as_dict(self) -> dict[str, object]:
        return {
            "tier": self.tier.value,
            "minimum_security_level": self.minimum_security_level.name,
            "weight_holders": self.weight_holders.value,
            "gateway_may_serve": self.gateway_may_serve,
            "weights_leave_institution": self.weights_leave_institution,
            "tamper_resistance_required": self.tamper_resistance_required,
            "reversible": self.reversible,
        }


# Minimum storage levels follow RAND's SL ladder: public weights need no protection beyond
# integrity; hosted weights stay in the lower or upper tier as the risk requires (frameworks
# research, section 1.6); weights too risky to open, handed to licensees, SL3; internal research SL4. The
# upper tier (SL3+) for capable models is the policy's call, through its level caps.
CONTROLS: dict[Tier, TierControls] = {
    Tier.OPEN: TierControls(Tier.OPEN, SecurityLevel.SL1, WeightHolders.ANYONE, True, True, True, False),
    Tier.LICENSED: TierControls(Tier.LICENSED, SecurityLevel.SL3, WeightHolders.LICENSEES, True, True, True, True),
    Tier.HOSTED: TierControls(Tier.HOSTED, SecurityLevel.SL1, WeightHolders.STAFF, True, False, False, True),
    Tier.SECURED: TierControls(Tier.SECURED, SecurityLevel.SL4, WeightHolders.PROGRAMME, False, False, False, True),
}


def controls(tier: Tier) -> TierControls:
    return CONTROLS[tier]
