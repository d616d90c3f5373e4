"""Report drafts in the recipient's own fields, with every missing item marked missing. Pure.

- CoP Measure 9.2 (GPAI Code of Practice, Safety and Security): the initial report holds items 1-7,
  the final report all nine; "missing items must be recorded as missing".
- NIS2 Art. 23(4): (a) the early warning (suspected unlawful or malicious act; possible cross-border
  impact), (b) the incident notification (initial assessment with severity and impact, indicators
  of compromise), (d) the final report (detailed description with severity and impact, type of
  threat or root cause, applied and ongoing mitigations, cross-border impact).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from aperture.core.errors import InvalidInput
from aperture.raid.domain import Incident
from aperture.raid.tlp import Tlp

MISSING = "MISSING"


class Form(StrEnum):
    COP_INITIAL = "cop-9.2-initial"
    COP_FINAL = "cop-9.2-final"
    NIS2_EARLY_WARNING = "nis2-early-warning"
    NIS2_NOTIFICATION = "nis2-notification"
    NIS2_FINAL = "nis2-final"


def parse_form(text: str) -> Form:
    try:
        return Form(text.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a report form", hint="forms: " + ", ".join(f.value for f in Form)
        ) from None


@dataclass(frozen=True, slots=True)
class DraftField:
    number: str
    label: str
    value: str | None  # None: missing

    @property
    def missing(self) -> bool:
        return self.value is None


@dataclass(frozen=True, slots=True)
class Draft:
    form: Form
    incident_id: str
    tlp: Tlp
    legal_basis: str
    fields: tuple[DraftField, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(f.number for f in self.fields if f.missing)

    def as_dict(self) -> dict[str, Any]:
        return {
            "form": self.form.value,
            "incident": self.incident_id,
            "tlp": self.tlp.label,
            "legal_basis": self.legal_basis,
            "fields": [
                {"item": f.number, "label": f.label, "value": f.value, "missing": f.missing} for f in self.fields
            ],
            "missing": list(self.missing),
        }

    def text(self) -> str:
        """Plain text: the TLP label first (TLP 2.0 e-mail rule), then every item, missing ones marked."""
        lines = [self.tlp.label, f"{self.form.value} for incident {self.incident_id}", self.legal_basis, ""]
        for item in self.fields:
            lines.append(f"{item.number}. {item.label}: {MISSING if item.value is None else item.value}")
        return "\n".join(lines) + "\n"


def _day(moment: datetime | None) -> str | None:
    return None if moment is None else moment.date().isoformat()


def _join(*parts: str | None) -> str | None:
    found = [p for p in parts if p]
    return "; ".join(found) if found else None


def _yes_no(value: str | None) -> str | None:
    return None if value is None else value


def draft(form: Form, incident: Incident, version_labels: Mapping[str, str]) -> Draft:
    """`version_labels` maps the incident's model version ids to how the recipient names them."""
    facts = incident.facts
    severity = incident.severity.value
    if form in (Form.COP_INITIAL, Form.COP_FINAL):
        start = facts.get("start_date") or _day(incident.occurred_from)
        end = facts.get("end_date") or _day(incident.occurred_until)
        dates = None if start is None else f"from {start} to {end or 'ongoing or unknown (' + MISSING + ')'}"
        models = [version_labels.get(v, v) for v in incident.versions()]
        fields = [
            DraftField("1", "start and end dates (or best approximation)", dates),
            DraftField(
                "2", "resulting harm and victim or affected group", _join(facts.get("harm"), facts.get("affected"))
            ),
            DraftField("3", "chain of events", facts.get("chain_of_events")),
            DraftField("4", "model involved", ", ".join(models) if models else None),
            DraftField("5", "material describing the model's involvement", facts.get("involvement")),
            DraftField("6", "the signatory's response, intended or done", facts.get("response")),
            DraftField(
                "7", "recommendations to the AI Office and national competent authorities", facts.get("recommendations")
            ),
        ]
        if form is Form.COP_FINAL:
            fields += [
                DraftField("8", "root-cause analysis", facts.get("root_cause")),
                DraftField("9", "related post-market-monitoring patterns", facts.get("patterns")),
            ]
        basis = "GPAI Code of Practice, Safety and Security, Measure 9.2 (" + (
            "initial report: items 1-7)" if form is Form.COP_INITIAL else "final report: items 1-9)"
        )
        return Draft(form, incident.id, incident.tlp, basis, tuple(fields))
    if form is Form.NIS2_EARLY_WARNING:
        fields = [
            DraftField(
                "a.1", "suspected of being caused by unlawful or malicious acts", _yes_no(facts.get("malicious"))
            ),
            DraftField("a.2", "could have a cross-border impact", _yes_no(facts.get("cross_border"))),
        ]
        return Draft(form, incident.id, incident.tlp, "NIS2 Art. 23(4)(a): early warning", tuple(fields))
    if form is Form.NIS2_NOTIFICATION:
        assessment = _join(f"severity {severity}" if incident.assessment else None, facts.get("harm"))
        fields = [
            DraftField(
                "b.1", "suspected of being caused by unlawful or malicious acts", _yes_no(facts.get("malicious"))
            ),
            DraftField("b.2", "could have a cross-border impact", _yes_no(facts.get("cross_border"))),
            DraftField("b.3", "initial assessment, including severity and impact", assessment),
            DraftField("b.4", "indicators of compromise, where available", facts.get("indicators")),
        ]
        return Draft(form, incident.id, incident.tlp, "NIS2 Art. 23(4)(b): incident notification", tuple(fields))
    description = _join(incident.summary, f"severity {severity}" if incident.assessment else None, facts.get("harm"))
    fields = [
        DraftField("d.i", "detailed description, including severity and impact", description),
        DraftField(
            "d.ii",
            "type of threat or root cause likely to have triggered it",
            _join(facts.get("threat_type"), facts.get("root_cause")),
        ),
        DraftField("d.iii", "applied and ongoing mitigation measures", facts.get("mitigations")),
        DraftField("d.iv", "cross-border impact, where applicable", facts.get("cross_border")),
    ]
    return Draft(form, incident.id, incident.tlp, "NIS2 Art. 23(4)(d): final report", tuple(fields))
