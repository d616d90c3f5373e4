"""The platform's own alerts as RAID intake items: one adapter per source. Pure (the caller looks up
what the adapter needs, such as model version ids, and passes it in).

Each item keeps the source record's id (automatic intake is idempotent on it), `aware_at` is the
moment the institution's own system recorded the alert, and the event's own dates are kept apart.
Every item starts as TLP:AMBER+STRICT (the desk only) and is bound to the model versions, licences,
licensees and organisations it concerns. How each source stores its records today:

- gateway misuse: `gateway.domain.Alert` (gateway_alerts; the blocked requests are its evidence,
  each naming the model as NAME:VERSION);
- security: `security.domain.Alert` (security_alerts: canary touches, download surges, reaches
  outside programmes, bad unseal shares, replayed tokens; the asset as an AssetRef);
- risk: a `RiskProfile` and the `Crossing`s of a policy's thresholds (`risk.domain.crossings`);
- licensing traces: the signed trace report (licensing_traces, JSON with `accused`, `scores`);
- licence breaches: a `Licence` suspended or revoked, with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from aperture.access.domain import AssetKind
from aperture.gateway.domain import Alert as GatewayAlert
from aperture.licensing.domain import Licence, LicenceState
from aperture.raid.domain import Binding, BindingKind, Detection, IntakeItem, Source, SourceKind
from aperture.raid.taxonomy import Severity
from aperture.raid.tlp import Tlp
from aperture.risk.domain import Crossing, RiskProfile
from aperture.security.domain import Alert as SecurityAlert
from aperture.security.domain import AlertKind

MAX_EVIDENCE_ITEMS = 50
EXCERPT = 500
_ACTOR = re.compile(r"^(?P<name>[^ ]+)(?: \((?:key [0-9a-f]{8}|session)\))?$")


def _model_bindings(references: Sequence[str], versions: Mapping[str, str]) -> tuple[list[Binding], list[str]]:
    bound: list[Binding] = []
    unresolved: list[str] = []
    for reference in dict.fromkeys(references):
        version_id = versions.get(reference)
        if version_id is None:
            unresolved.append(reference)
        else:
            bound.append(Binding(BindingKind.MODEL_VERSION, version_id))
    return bound, unresolved


def principal_name(actor: str) -> str:
    """`bob (key ab12cd34)` -> `bob`: how alerts name who acted."""
    match = _ACTOR.match(actor.strip())
    return match.group("name") if match else actor.strip()[:63]


def from_gateway_alert(alert: GatewayAlert, *, versions: Mapping[str, str]) -> IntakeItem:
    """Repeated blocked requests from one gateway key: a misuse hazard for the desk."""
    blocks = list(alert.evidence)[:MAX_EVIDENCE_ITEMS]
    times = sorted(datetime.fromisoformat(b["at"]) for b in blocks if isinstance(b.get("at"), str))
    models, unresolved = _model_bindings([str(b.get("model", "")) for b in blocks if b.get("model")], versions)
    evidence: dict[str, Any] = {
        "alert": alert.id,
        "kind": alert.kind,
        "key_id": alert.key_id,
        "blocks": [
            {
                "at": b.get("at"),
                "model": b.get("model"),
                "stage": b.get("stage"),
                "rule": str(b.get("rule", ""))[:200],
                "excerpt": str(b.get("excerpt", ""))[:EXCERPT],
            }
            for b in blocks
        ],
    }
    if unresolved:
        evidence["unresolved_models"] = unresolved
    rules = sorted({str(b.get("rule", ""))[:80] for b in blocks if b.get("rule")})
    return IntakeItem(
        source=Source(SourceKind.GATEWAY_ALERT, alert.id),
        title=f"Gateway misuse: {alert.kind.replace('_', ' ')} from key {alert.key_id}",
        summary=alert.summary + (f"\nRules matched: {', '.join(rules)}" if rules else ""),
        tlp=Tlp.AMBER_STRICT,
        aware_at=alert.raised_at,
        detection=Detection.AUTOMATED_TOOL,
        bindings=(*models, Binding(BindingKind.ORGANISATION, alert.organisation)),
        occurred_from=times[0] if times else None,
        occurred_until=times[-1] if times else None,
        severity=Severity.HAZARD,
        evidence=evidence,
    )


SECURITY_TITLES: dict[AlertKind, tuple[str, Severity]] = {
    AlertKind.CANARY: ("Canary asset touched", Severity.SERIOUS_HAZARD),
    AlertKind.DOWNLOAD_SURGE: ("Download surge above a person's baseline", Severity.HAZARD),
    AlertKind.OUTSIDE_PROGRAMMES: ("Access attempted outside a person's programmes", Severity.HAZARD),
    AlertKind.BAD_SHARE: ("A wrong unseal share was presented", Severity.SERIOUS_HAZARD),
    AlertKind.TOKEN_REPLAY: ("A used download token was presented again", Severity.SERIOUS_HAZARD),
}


def from_security_alert(alert: SecurityAlert, *, organisation_of: Mapping[str, str | None]) -> IntakeItem:
    """A canary touch or an access anomaly. The canary's label stays out of the item's text (the
    bound version says which asset, to those cleared for it)."""
    title, severity = SECURITY_TITLES[alert.kind]
    who = principal_name(alert.principal)
    bindings: list[Binding] = []
    if alert.asset is not None and alert.asset.kind is AssetKind.MODEL_VERSION:
        bindings.append(Binding(BindingKind.MODEL_VERSION, alert.asset.id))
    organisation = organisation_of.get(who)
    if organisation:
        bindings.append(Binding(BindingKind.ORGANISATION, organisation))
    facts = {k: v for k, v in alert.details.items() if k != "label" and isinstance(v, str | int | bool | type(None))}
    summary = (
        f"{alert.kind.value} ({alert.severity.value}) by {who}"
        + (f" from {alert.origin}" if alert.origin else "")
        + "".join(f"; {k}: {v}" for k, v in sorted(facts.items()))
    )
    return IntakeItem(
        source=Source(SourceKind.SECURITY_ALERT, alert.id),
        title=title,
        summary=summary,
        tlp=Tlp.AMBER_STRICT,
        aware_at=alert.raised_at,
        detection=Detection.AUTOMATED_TOOL,
        bindings=tuple(bindings),
        occurred_from=alert.raised_at,
        severity=severity,
        evidence={
            "alert": alert.id,
            "kind": alert.kind.value,
            "severity": alert.severity.value,
            "principal": who,
            "origin": alert.origin,
            **facts,
        },
    )


def from_risk_crossings(profile: RiskProfile, crossings: Sequence[Crossing]) -> list[IntakeItem]:
    """Each threshold a policy sets that the profile's evidence crosses: a capability hazard."""
    evidence = {e.id: e for e in profile.evidence}
    items: list[IntakeItem] = []
    for crossing in crossings:
        found = evidence.get(crossing.evidence_id)
        threshold = crossing.threshold
        domain = threshold.domain or (found.domain if found else None)
        when = found.created_at if found else profile.created_at
        items.append(
            IntakeItem(
                source=Source(
                    SourceKind.RISK_CROSSING, f"{profile.model_version_id}:{threshold.id}:{crossing.evidence_id}"[:200]
                ),
                title=f"Risk threshold crossed: {threshold.label}",
                summary=(
                    f"{threshold.metric} = {crossing.value:.4f} (conservative bound {crossing.bound:.4f}) crosses "
                    f"{threshold.above:g} on {found.title if found else 'evidence ' + crossing.evidence_id}, "
                    f"profile version {profile.version} of {profile.reference}"
                ),
                tlp=Tlp.AMBER_STRICT,
                aware_at=when,
                detection=Detection.AUTOMATED_TOOL,
                bindings=(Binding(BindingKind.MODEL_VERSION, profile.model_version_id),),
                severity=Severity.HAZARD,
                risk_domain=domain,
                evidence={
                    "threshold": threshold.id,
                    "metric": threshold.metric,
                    "value": f"{crossing.value:.6f}",
                    "bound": f"{crossing.bound:.6f}",
                    "evidence": crossing.evidence_id,
                    "profile_version": profile.version,
                },
            )
        )
    return items


def from_trace_report(report: Mapping[str, Any], *, versions: Mapping[str, str]) -> IntakeItem | None:
    """A signed trace report that accuses licensees of a leak (None when it accuses nobody)."""
    accused = [a for a in report.get("accused", []) if isinstance(a, Mapping) and a.get("organisation")]
    if not accused:
        return None
    names = sorted({str(a["organisation"]) for a in accused})
    licences = sorted(
        {
            str(s["licence_id"])
            for s in report.get("scores", [])
            if isinstance(s, Mapping) and s.get("accused") and s.get("licence_id")
        }
    )
    original = str(report.get("original", ""))
    models, unresolved = _model_bindings([original] if original else [], versions)
    bindings = [*models, *(Binding(BindingKind.LICENSEE, n) for n in names)]
    bindings += [Binding(BindingKind.LICENCE, licence) for licence in licences]
    created = str(report.get("created_at", ""))
    return IntakeItem(
        source=Source(SourceKind.LICENSING_TRACE, str(report["id"])),
        title=f"Trace report accuses {len(names)} licensee{'s' if len(names) > 1 else ''} of a leaked copy",
        summary=f"{report.get('verdict', '')}\n{report.get('collusion', '')}".strip() or "accused licensees",
        tlp=Tlp.AMBER_STRICT,
        aware_at=datetime.fromisoformat(created),
        detection=Detection.AUTOMATED_TOOL,
        bindings=tuple(bindings),
        severity=Severity.INCIDENT,
        evidence={
            "trace": str(report["id"]),
            "accused": [{"organisation": str(a["organisation"]), "z": str(a.get("z", ""))} for a in accused],
            "original": original,
            **({"unresolved_models": unresolved} if unresolved else {}),
        },
    )


def from_licence_breach(licence: Licence) -> IntakeItem | None:
    """A licence suspended or revoked (the reason recorded on it); None for other states."""
    if licence.state not in (LicenceState.SUSPENDED, LicenceState.REVOKED):
        return None
    terms = licence.terms
    return IntakeItem(
        source=Source(
            SourceKind.LICENCE_BREACH, f"{licence.id}:{licence.state.value}:{licence.updated_at.isoformat()}"
        ),
        title=f"Licence {licence.state.value}: {terms.organisation} for {terms.model}",
        summary=licence.reason or f"the licence was {licence.state.value}",
        tlp=Tlp.AMBER_STRICT,
        aware_at=licence.updated_at,
        detection=Detection.HUMAN_REVIEW,
        bindings=(
            Binding(BindingKind.MODEL_VERSION, terms.model_version_id),
            Binding(BindingKind.LICENCE, licence.id),
            Binding(BindingKind.LICENSEE, terms.organisation),
        ),
        severity=Severity.HAZARD,
        evidence={"licence": licence.id, "state": licence.state.value},
    )
