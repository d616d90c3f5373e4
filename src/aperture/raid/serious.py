"""Is it a serious incident, and under which regime? Pure: facts in, a finding with its reasons out.

Sources (verbatim where marked in docs/raid.md):
- AI Act (Reg. (EU) 2024/1689) Art. 3(49): a serious incident is "an incident or malfunctioning of an
  AI system that directly or indirectly leads to any of the following: (a) the death of a person, or
  serious harm to a person's health; (b) a serious and irreversible disruption of the management or
  operation of critical infrastructure; (c) the infringement of obligations under Union law intended
  to protect fundamental rights; (d) serious harm to property or the environment".
- AI Act Art. 73(2)-(4): a provider of a high-risk AI system reports once it "has established a
  causal link between the AI system and the serious incident or the reasonable likelihood of such a
  link" (for a death, as soon as it suspects one).
- GPAI Code of Practice, Safety and Security chapter, Measure 9.3: a signatory (GPAI with systemic
  risk) reports when the model's involvement (direct or indirect) led to the harm or it
  "establish[es] or suspect[s] with reasonable likelihood" such a causal relationship; the limbs are
  critical infrastructure, a serious cybersecurity breach (including (self-)exfiltration of model
  weights and cyberattacks), a death, and other serious harm (health, fundamental rights, property
  or environment).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Harm(StrEnum):
    DEATH = "death"
    SERIOUS_HEALTH_HARM = "serious-health-harm"
    CRITICAL_INFRASTRUCTURE = "critical-infrastructure"  # serious and irreversible disruption
    FUNDAMENTAL_RIGHTS = "fundamental-rights"
    PROPERTY_OR_ENVIRONMENT = "property-or-environment"
    CYBER_BREACH = "cyber-breach"  # serious cybersecurity breach, incl. weight (self-)exfiltration
    WIDESPREAD_INFRINGEMENT = "widespread-infringement"  # AI Act Art. 3(61), a limb of Art. 73(3)


class CausalLink(StrEnum):
    """How far the link between the AI system (or model) and the harm is known."""

    ESTABLISHED = "established"
    REASONABLY_LIKELY = "reasonably-likely"
    SUSPECTED = "suspected"  # suspected, without reasonable likelihood yet
    NONE = "none"
    UNKNOWN = "unknown"


class Regime(StrEnum):
    """Facts about who is involved that decide which reporting regimes apply."""

    HIGH_RISK_SYSTEM = "high-risk-system"  # AI Act Art. 6: a high-risk AI system is involved
    GPAI_SYSTEMIC_RISK = "gpai-systemic-risk"  # a GPAI model with systemic risk (Art. 51), CoP signatory
    NIS2_ENTITY = "nis2-entity"  # an essential or important entity under NIS2 suffered it
    PRODUCT_VULNERABILITY = "product-vulnerability"  # an actively exploited vulnerability (CRA Art. 14)
    PERSONAL_DATA = "personal-data"  # a personal-data breach


# Art. 3(49): the four limbs of the definition.
ART_3_49: dict[Harm, str] = {
    Harm.DEATH: "AI Act Art. 3(49)(a): the death of a person",
    Harm.SERIOUS_HEALTH_HARM: "AI Act Art. 3(49)(a): serious harm to a person's health",
    Harm.CRITICAL_INFRASTRUCTURE: (
        "AI Act Art. 3(49)(b): a serious and irreversible disruption of critical infrastructure"
    ),
    Harm.FUNDAMENTAL_RIGHTS: "AI Act Art. 3(49)(c): an infringement of Union law protecting fundamental rights",
    Harm.PROPERTY_OR_ENVIRONMENT: "AI Act Art. 3(49)(d): serious harm to property or the environment",
}


class Limb(StrEnum):
    """The limb that sets a regime's deadline."""

    AIA_GENERAL = "ai-act-73(2)"
    AIA_WIDESPREAD_OR_INFRASTRUCTURE = "ai-act-73(3)"
    AIA_DEATH = "ai-act-73(4)"
    COP_CRITICAL_INFRASTRUCTURE = "cop-9.3-critical-infrastructure"
    COP_CYBER_BREACH = "cop-9.3-cyber-breach"
    COP_DEATH = "cop-9.3-death"
    COP_OTHER_SERIOUS_HARM = "cop-9.3-other-serious-harm"


@dataclass(frozen=True, slots=True)
class SeriousnessFacts:
    harms: frozenset[Harm] = frozenset()
    causal_link: CausalLink = CausalLink.UNKNOWN
    regimes: frozenset[Regime] = frozenset()


@dataclass(frozen=True, slots=True)
class Finding:
    """The answer for one regime: whether it applies, its limbs, and every reason."""

    regime: str  # "ai-act-3(49)", "ai-act-73", "cop-9.3"
    applies: bool
    limbs: tuple[Limb, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Seriousness:
    serious: bool  # a harm of Art. 3(49), or the CoP's serious cybersecurity breach
    reportable: bool  # a regime that applies here makes someone report it (Art. 73 or CoP 9.3)
    definition: Finding  # AI Act Art. 3(49): the harm itself
    ai_act: Finding  # Art. 73: a high-risk system's provider must report
    code_of_practice: Finding  # CoP Measure 9.3: a GPAI-SR signatory must report

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.definition.reasons + self.ai_act.reasons + self.code_of_practice.reasons


LINKED_FOR_AIA = (CausalLink.ESTABLISHED, CausalLink.REASONABLY_LIKELY)
LINKED_FOR_COP = (CausalLink.ESTABLISHED, CausalLink.REASONABLY_LIKELY)


def assess_seriousness(facts: SeriousnessFacts) -> Seriousness:
    """Apply Art. 3(49), Art. 73 and CoP Measure 9.3 to the facts, with a reason for each step."""
    definitional = sorted((h for h in facts.harms if h in ART_3_49), key=list(ART_3_49).index)
    definition = Finding(
        "ai-act-3(49)",
        bool(definitional),
        (),
        tuple(ART_3_49[h] for h in definitional)
        or ("AI Act Art. 3(49): none of the harms (a)-(d) is recorded: not a serious incident by definition",),
    )
    ai_act = _ai_act(facts, definition.applies)
    code = _code_of_practice(facts)
    return Seriousness(
        serious=definition.applies or Harm.CYBER_BREACH in facts.harms,
        reportable=ai_act.applies or code.applies,
        definition=definition,
        ai_act=ai_act,
        code_of_practice=code,
    )


def _ai_act(facts: SeriousnessFacts, harmful: bool) -> Finding:
    reasons: list[str] = []
    if Regime.HIGH_RISK_SYSTEM not in facts.regimes:
        return Finding("ai-act-73", False, (), ("AI Act Art. 73: no high-risk AI system (Art. 6) is involved",))
    if not harmful:
        return Finding("ai-act-73", False, (), ("AI Act Art. 73: applies only to serious incidents (Art. 3(49))",))
    death = Harm.DEATH in facts.harms
    linked = facts.causal_link in LINKED_FOR_AIA or (death and facts.causal_link is CausalLink.SUSPECTED)
    if not linked:
        return Finding(
            "ai-act-73",
            False,
            (),
            (
                f"AI Act Art. 73(2): the causal link is {facts.causal_link.value}; the report is due once it is "
                "established or reasonably likely (for a death, once suspected: Art. 73(4))",
            ),
        )
    limbs = [Limb.AIA_GENERAL]
    reasons.append(
        f"AI Act Art. 73(2): serious incident of a high-risk AI system, causal link {facts.causal_link.value}"
    )
    if Harm.CRITICAL_INFRASTRUCTURE in facts.harms or Harm.WIDESPREAD_INFRINGEMENT in facts.harms:
        limbs.append(Limb.AIA_WIDESPREAD_OR_INFRASTRUCTURE)
        reasons.append("AI Act Art. 73(3): widespread infringement or critical-infrastructure disruption")
    if death:
        limbs.append(Limb.AIA_DEATH)
        reasons.append("AI Act Art. 73(4): the death of a person")
    return Finding("ai-act-73", True, tuple(limbs), tuple(reasons))


def _code_of_practice(facts: SeriousnessFacts) -> Finding:
    if Regime.GPAI_SYSTEMIC_RISK not in facts.regimes:
        return Finding("cop-9.3", False, (), ("CoP Measure 9.3: no GPAI model with systemic risk is involved",))
    limbs: list[Limb] = []
    reasons: list[str] = []
    if Harm.CRITICAL_INFRASTRUCTURE in facts.harms:
        limbs.append(Limb.COP_CRITICAL_INFRASTRUCTURE)
        reasons.append("CoP Measure 9.3: serious and irreversible disruption of critical infrastructure")
    if Harm.CYBER_BREACH in facts.harms:
        limbs.append(Limb.COP_CYBER_BREACH)
        reasons.append("CoP Measure 9.3: serious cybersecurity breach (incl. weight exfiltration, cyberattacks)")
    if Harm.DEATH in facts.harms:
        limbs.append(Limb.COP_DEATH)
        reasons.append("CoP Measure 9.3: the death of a person")
    other = facts.harms & {Harm.SERIOUS_HEALTH_HARM, Harm.FUNDAMENTAL_RIGHTS, Harm.PROPERTY_OR_ENVIRONMENT}
    if other:
        limbs.append(Limb.COP_OTHER_SERIOUS_HARM)
        reasons.append("CoP Measure 9.3: other serious harm (" + ", ".join(sorted(h.value for h in other)) + ")")
    if not limbs:
        return Finding("cop-9.3", False, (), ("CoP Measure 9.3: none of its harms is recorded",))
    if facts.causal_link not in LINKED_FOR_COP:
        return Finding(
            "cop-9.3",
            False,
            (),
            (
                f"CoP Measure 9.3: the causal link is {facts.causal_link.value}; the report is due once the model's "
                "involvement is established or suspected with reasonable likelihood",
            ),
        )
    reasons.insert(0, f"CoP Measure 9.3: GPAI model with systemic risk involved, causal link {facts.causal_link.value}")
    return Finding("cop-9.3", True, tuple(limbs), tuple(reasons))
