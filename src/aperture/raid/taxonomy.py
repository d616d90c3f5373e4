"""The words a RAID item is classified in: the OECD severity ladder, AVID codes, sectors and
member states. Risk domains are the risk profile's own (`aperture.risk.domain.RiskDomain`). Pure.

- Severity: OECD common reporting framework (OECD AI Papers No. 34, 2025), criterion 10: hazard ->
  serious hazard -> incident -> serious incident -> disaster; `undetermined` until triaged.
- AVID: the AI Vulnerability Database taxonomy's effect view (S/E/P codes), `avidml/avidtools`
  `avidtools/datamodels/enums.py`.
- Sectors: the EU routing table's rows (docs/raid.md, routing.yaml).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from aperture.core.errors import InvalidInput
from aperture.risk.domain import RiskDomain


class Severity(StrEnum):
    UNDETERMINED = "undetermined"
    HAZARD = "hazard"
    SERIOUS_HAZARD = "serious-hazard"
    INCIDENT = "incident"
    SERIOUS_INCIDENT = "serious-incident"
    DISASTER = "disaster"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)

    @property
    def criticality(self) -> int | None:
        """STIX incident-core `criticality` (0-100), by the extension's Appendix A scale."""
        return CRITICALITY[self]


CRITICALITY: dict[Severity, int | None] = {
    Severity.UNDETERMINED: None,
    Severity.HAZARD: 15,  # Low
    Severity.SERIOUS_HAZARD: 40,  # Moderate
    Severity.INCIDENT: 45,  # Moderate
    Severity.SERIOUS_INCIDENT: 70,  # High
    Severity.DISASTER: 95,  # Extreme
}


class Sector(StrEnum):
    GENERAL = "general"
    DIGITAL_INFRASTRUCTURE = "digital-infrastructure"
    FINANCE = "finance"
    MEDICINES = "medicines"
    MEDICAL_DEVICES = "medical-devices"
    PUBLIC_HEALTH = "public-health"
    AVIATION = "aviation"
    MARITIME = "maritime"
    RAIL = "rail"
    ENERGY = "energy"
    FOOD = "food"
    CHEMICALS = "chemicals"
    NUCLEAR = "nuclear"
    LAW_ENFORCEMENT = "law-enforcement"
    ONLINE_PLATFORMS = "online-platforms"
    EU_INSTITUTIONS = "eu-institutions"
    CIVIL_PROTECTION = "civil-protection"
    FOREIGN_INTERFERENCE = "foreign-interference"


# The 27 member states of the European Union (ISO 3166-1 alpha-2; Greece is EL in EU usage, GR in ISO).
MEMBER_STATES = frozenset(
    {
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IE",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
    }
)


def check_member_state(code: str) -> str:
    value = code.strip().upper()
    if value == "EL":
        value = "GR"
    if value not in MEMBER_STATES:
        raise InvalidInput(
            f"{code!r} is not an EU member state", hint="give its ISO 3166-1 code, e.g. FR, DE, NL (GR for Greece)"
        )
    return value


def parse_sector(text: str) -> Sector:
    try:
        return Sector(text.strip().lower())
    except ValueError:
        raise InvalidInput(f"{text!r} is not a sector", hint="sectors: " + ", ".join(s.value for s in Sector)) from None


def parse_risk_domain(text: str) -> RiskDomain:
    try:
        return RiskDomain(text.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a risk domain", hint="domains: " + ", ".join(d.value for d in RiskDomain)
        ) from None


def parse_severity(text: str) -> Severity:
    try:
        return Severity(text.strip().lower().replace(" ", "-").replace("_", "-"))
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a severity on the OECD ladder", hint="severities: " + ", ".join(s.value for s in Severity)
        ) from None


# AVID effect view (SepEnum): Security, Ethics, Performance.
AVID: dict[str, str] = {
    "S0100": "Software Vulnerability",
    "S0200": "Supply Chain Compromise",
    "S0201": "Model Compromise",
    "S0202": "Software Compromise",
    "S0300": "Over-permissive API",
    "S0301": "Information Leak",
    "S0302": "Excessive Queries",
    "S0400": "Model Bypass",
    "S0401": "Bad Features",
    "S0402": "Insufficient Training Data",
    "S0403": "Adversarial Example",
    "S0500": "Exfiltration",
    "S0501": "Model inversion",
    "S0502": "Model theft",
    "S0600": "Data Poisoning",
    "S0601": "Ingest Poisoning",
    "E0100": "Bias/ Discrimination",
    "E0101": "Group fairness",
    "E0102": "Individual fairness",
    "E0200": "Explainability",
    "E0201": "Global explanations",
    "E0202": "Local explanations",
    "E0300": "User actions",
    "E0301": "Toxicity",
    "E0302": "Polarization/ Exclusion",
    "E0400": "Misinformation",
    "E0401": "Deliberative Misinformation",
    "E0402": "Generative Misinformation",
    "P0100": "Data issues",
    "P0101": "Data drift",
    "P0102": "Concept drift",
    "P0103": "Data entanglement",
    "P0104": "Data quality issues",
    "P0105": "Feedback loops",
    "P0200": "Model issues",
    "P0201": "Resilience/ Stability",
    "P0202": "OOD generalization",
    "P0203": "Scaling",
    "P0204": "Accuracy",
    "P0300": "Privacy",
    "P0301": "Anonymization",
    "P0302": "Randomization",
    "P0303": "Encryption",
    "P0400": "Safety",
    "P0401": "Psychological Safety",
    "P0402": "Physical safety",
    "P0403": "Socioeconomic safety",
    "P0404": "Environmental safety",
}


def check_avid(codes: Iterable[str]) -> tuple[str, ...]:
    found: list[str] = []
    for code in codes:
        value = code.strip().upper().removeprefix("AVID-EFFECT:").split(":")[-1]
        if value not in AVID:
            raise InvalidInput(f"{code!r} is not an AVID effect code", hint="e.g. S0403 (adversarial example), E0301")
        found.append(value)
    return tuple(dict.fromkeys(found))
