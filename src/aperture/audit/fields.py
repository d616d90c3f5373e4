"""What the public log shows of each event, field by field: the classification table.

One row per action: the visibility of its actor, its resource and each of its details fields.
`public` is shown to everyone; `internal` is withheld from the public (shown to those allowed to
read the private view); `upper-tier` is shown unless the event concerns an upper-tier asset
(`append(..., upper_tier=True)`, or a resource naming an asset by its opaque id), in which case
it is withheld and needs clearance for the asset as well. What the table does not know is
internal: an unknown action withholds everything but its name, an unknown field is withheld.

The rule behind the rows (docs/audit.md, "What the public log shows"):
- people are personal data: actors, principals, names on votes, addresses (`origin`) and
  anything a person typed about themselves or others are internal;
- anything naming or describing an upper-tier asset (its name, id, facts, results, reasons) is
  upper-tier;
- internal assessments and arrangements (partner states' assessments, licensees, backends,
  programmes, alert kinds) are internal;
- what a state change is and its public outcome (tier, level, counts, digests, policy ids) is
  public.

tests/audit/test_fields.py fails when an emitter in src/ uses an action or a details field this
table does not name.
"""

from __future__ import annotations

from collections.abc import Mapping

from aperture.audit.domain import FAIL_CLOSED, EventFields, Visibility

P = Visibility.PUBLIC
I = Visibility.INTERNAL  # noqa: E741 (the table reads as P / I / U)
U = Visibility.UPPER_TIER


def _event(actor: Visibility, resource: Visibility, **details: Visibility) -> EventFields:
    return EventFields(actor=actor, resource=resource, details=details)


_PRINCIPAL = {
    "kind": P,
    "organisation": I,
    "clearance": I,
    "vetting": I,
    "roles": I,
    "programmes": I,
    "disabled": I,
}
_REFUSALS = {
    "window_start": P,
    "window_s": P,
    "total": P,
    "by_reason": P,
    "origins": P,
    "capped": P,
    "by_origin": I,  # keyed hashes of addresses: pseudonymous, still personal
    "by_subject": I,
}
_APPLICATION_OUTCOME = {"outcome": P}
_LICENCE_EVENT = {
    "from": P,
    "to": P,
    "reason": I,  # why a licensee was suspended or revoked
    "receivables": I,
    "tokens_cancelled": P,
    "receivables_cancelled": I,
}
_WEIGHTS = {"grant_id": P, "files": U, "bytes": U, "origin": I, "hub": I}
_EVIDENCE = {"evidence": U, "title": U, "profile_version": U}

CLASSIFICATION: Mapping[str, EventFields] = {
    # --- instance
    "instance.initialised": _event(P, P, signing_key_id=P, artifact_key_id=P),
    # --- access: keys, sign-ins, refusals
    "access.key.issued": _event(I, P, name=I, principal=I, roles=P, scopes=P, expires_at=P, issued_by=I, request_id=I),
    "access.key.requested": _event(I, I, name=I, principal=I, roles=I, scopes=I, expires_at=I),
    "access.key.revoked": _event(I, P),
    "access.key.refused": _event(I, I, why=P, origin=I),  # before refusals were counted
    "access.login.succeeded": _event(I, I, origin=I),
    "access.login.failed": _event(I, I, origin=I, why=P),  # before refusals were counted
    "access.login.locked_out": _event(I, I, origin=I),
    "access.session.ended": _event(I, I, origin=I, why=I),
    "audit.refusals": _event(P, P, **_REFUSALS),
    # --- access: records and decisions
    "access.state.saved": _event(I, P, name=P, kind=P, eu=P, cyber_assurance=I, rule_of_law=I),
    "access.organisation.saved": _event(I, P, kind=P, state=P, parent=P, foreign_control=I),
    "access.programme.added": _event(I, I, title=I),
    "access.principal.added": _event(I, I, **_PRINCIPAL),
    "access.principal.updated": _event(I, I, **_PRINCIPAL),
    "access.password.set": _event(I, I),
    "access.asset.classified": _event(I, U, level=P, programme=I, label=U),
    "access.decision": _event(I, U, action=P, allowed=P, level=P, reasons=P, policy_version=P, origin=I),
    "access.instance.denied": _event(I, P, action=P, reasons=P, origin=I),
    # --- registry
    "registry.model.created": _event(I, U, model_id=U),
    "registry.version.registered": _event(
        I,
        U,
        version_id=U,
        format=U,
        architecture=U,
        parameter_count=U,
        dtypes=U,
        files=U,
        total_bytes=U,
        manifest_digest=U,
        signing_key_id=P,
        licence=U,
        base_model=U,
        base_external=U,
        base_licence=U,
        training_flop=U,
        skipped=U,
        level=P,
        sealed=P,
        facts_digest=U,
    ),
    "registry.version.facts_signed": _event(
        I, U, version_id=U, facts_digest=U, manifest_digest=U, previous_manifest_digest=U
    ),
    "registry.version.verified": _event(I, U, version_id=U, manifest_digest=U, facts=U, facts_digest=U),
    "registry.version.verification_failed": _event(I, U, version_id=U, problem=U, fields=U),
    "registry.garbage_collected": _event(I, P, blob=P, bytes=P, sealed=P, temporary=P),
    "registry.version.exported": _event(I, U, version_id=U, destination=I),
    # --- risk
    "risk.run.started": _event(I, U, run=U, suite=U, items=U, model_digest=U),
    "risk.run.completed": _event(I, U, run=U, suite=U, evidence=U, headline=U, profile_version=U),
    "risk.evidence.imported": _event(I, U, file_sha256=U, format=U, evidence=U, override_reason=U, profile_version=U),
    "risk.finding.attached": _event(I, U, attachment=U, **_EVIDENCE),
    "risk.tamper.completed": _event(I, U, **_EVIDENCE),
    # --- security
    "security.seal.initialised": _event(I, P, threshold=P, custodians=I),
    "security.seal.share_refused": _event(I, P, problem=I, origin=I),
    "security.seal.share_presented": _event(I, P, share_index=I, presented=P, threshold=P),
    "security.seal.unsealed": _event(I, P, share_index=I, presented=P, threshold=P),
    "security.seal.sealed": _event(I, P),
    "security.grant.requested": _event(I, U, grant_id=P, action=P, seconds=P),
    "security.grant.approval_refused": _event(I, U, grant_id=P, reasons=P, problem=I),
    "security.grant.approved": _event(I, U, grant_id=P, expires_at=P),
    "security.grant.endorsed": _event(I, U, grant_id=P, expires_at=P),
    "security.grant.revoked": _event(I, U, grant_id=P),
    "security.token.issued": _event(I, U, grant_id=P, expires_at=P),
    "security.token.refused": _event(I, U, grant_id=P, why=P, origin=I),
    "security.download.refused": _event(I, U, grant_id=P, why=P, origin=I),
    "security.weights.download": _event(I, U, **_WEIGHTS),
    "security.weights.export": _event(I, U, **_WEIGHTS),
    "security.weights.copy_to_hub": _event(I, U, **_WEIGHTS),
    # An alert's kind would tell whoever touched a canary that it was one.
    "security.alert.raised": _event(P, P, severity=I, kind=I),
    "security.alert.acknowledged": _event(I, P),
    # --- gateway
    "gateway.key.issued": _event(I, P, organisation=I, name=I, expires_at=P),
    "gateway.key.revoked": _event(I, P),
    "gateway.backend.bound": _event(I, U, kind=U, url=I, remote_model=I, timeout_s=P),
    "gateway.backend.removed": _event(I, U),
    "gateway.grant.given": _event(I, U, organisation=I),
    "gateway.grant.revoked": _event(I, U, organisation=I),
    # The scope is a key id or an organisation's name.
    "gateway.limits.set": _event(I, I, requests_per_minute=P, tokens_per_minute=P, monthly_tokens=P, max_tokens=P),
    "gateway.price.set": _event(I, U, input_eur_per_mtok=U, output_eur_per_mtok=U),
    "gateway.policy.set": _event(I, U, input_rules=U, output_rules=U, classifier=U),
    "gateway.alert.raised": _event(P, P, kind=I, key_id=I, blocks=I),
    "gateway.alert.picked_up": _event(I, P),
    # --- licensing: who applies for and holds licensed (SL3) models is internal
    "licensing.application.submitted": _event(I, P, organisation=I, model=U),
    "licensing.application.screened": _event(I, P, question=P, answer=P),
    "licensing.application.approval_proposed": _event(I, P, **_APPLICATION_OUTCOME),
    "licensing.application.approved": _event(I, P, approvers=I, **_APPLICATION_OUTCOME),
    "licensing.application.rejected": _event(I, P, **_APPLICATION_OUTCOME),
    "licensing.application.more_information": _event(I, P, **_APPLICATION_OUTCOME),
    "licensing.application.answered": _event(I, P),
    "licensing.licence.drafted": _event(I, P, terms=I),
    "licensing.licence.activate": _event(I, P, **_LICENCE_EVENT),
    "licensing.licence.suspend": _event(I, P, **_LICENCE_EVENT),
    "licensing.licence.reinstate": _event(I, P, **_LICENCE_EVENT),
    "licensing.licence.revoke": _event(I, P, **_LICENCE_EVENT),
    "licensing.licence.expire": _event(I, P, **_LICENCE_EVENT),
    "licensing.master_secret.created": _event(P, P, keyring_id=P),
    # The commitment and shard hashes are public on purpose: they date the mark and identify a
    # verbatim leak. How the mark is made (alpha, the self-test's z) is not.
    "licensing.copy.issued": _event(
        I, P, licence_id=P, organisation=I, model=U, commitment=P, shard_hashes=P, self_test_z=I, alpha=I
    ),
    "licensing.token.refused": _event(I, P, why=P),
    "licensing.token.issued": _event(I, P, expires_at=P),
    "licensing.download.refused": _event(I, P, why=P),
    "licensing.copy.downloaded": _event(I, P, licence_id=P, origin=I, files=P),
    "licensing.trace.reported": _event(I, P, digest=P, accused=I),
    "licensing.identify": _event(I, P, hash_matches=I, derived_from=I),
    "licensing.diffusion.open": _event(I, U, decision_id=U, copies=U, live_licences=U),
    "licensing.diffusion.partners": _event(I, U, decision_id=U, copies=U, live_licences=U),
    # --- release: votes and reasons are published, names on them are not
    "release.policy.adopted": _event(I, P, version=P, digest=P, reason=P),
    "release.proposed": _event(I, U, proposal=U, tier=P, policy_tier=U, policy=P, profile_version=U, stages=U),
    "release.conflict.declared": _event(I, U, reason=I),
    "release.voted": _event(I, U, approve=P, reason=U),
    "release.rejected": _event(I, U, approvals=P, quorum=P),
    "release.decided": _event(I, U, proposal=U, tier=P, record_sha256=U, key_id=P, dissent=P, cooling_off_until=P),
    "release.take_effect": _event(I, U, tier=P, decision_id=U),
    "release.challenged": _event(I, U, reason=U),
    "release.withdrawn": _event(I, U, reason=U),
    "release.stale": _event(I, U, problems=U),
    "release.refused": _event(I, U, request=P, reason=U),
    "release.reassessment.triggered": _event(I, U, kind=P, reason=U),
    # --- raid: the risk desk's items carry TLP labels; what an item is, who reported it, where it
    # went and what it says are internal (TLP:RED items are upper-tier as well); that a change
    # happened is public, and the desk's own routing table and counts
    "raid.report.received": _event(I, U, attachments=I, bindings=I, source=I, tlp=I),
    "raid.report.information_added": _event(I, U, attachments=I, characters=I),
    "raid.incident.assessed": _event(
        I,
        U,
        avid=I,
        dual_use=I,
        member_state=I,
        reportable=I,
        risk_domain=I,
        sector=I,
        serious=I,
        severity=I,
    ),
    "raid.incident.assigned": _event(I, U, assignee=I, previous=I),
    "raid.incident.aware_set": _event(I, U, aware_at=I, previous=I),
    "raid.incident.facts_recorded": _event(I, U, fields=I),
    "raid.incident.forwarded": _event(
        I, U, body=I, form=I, message=I, required_by_law=I, route=I, tlp=I, with_identity=I
    ),
    "raid.incident.moved": _event(I, U, **{"from": I, "into": I, "move": I, "to": I}),
    "raid.incident.routed": _event(I, U, obligations=I, routes=I, table_version=I),
    "raid.incident.shared": _event(I, U, **{"from": I, "organisations": I, "principals": I, "tlp": I}),
    "raid.obligation.met": _event(I, U, clock=I, kind=I, late=I, obligation=I),
    "raid.advisory.drafted": _event(I, U, advisory=I, embargo_until=I, parties=I, policy=I),
    "raid.advisory.extended": _event(I, U, advisory=I, embargo_until=I),
    "raid.advisory.early_publication_decided": _event(I, U, advisory=I),
    "raid.advisory.notified": _event(I, U, advisory=I, messages=I, parties=I),
    "raid.advisory.published": _event(I, U, advisory=I, early=I),
    "raid.message.sent": _event(I, I, attempts=I, incident=I, kind=I),
    "raid.message.failed": _event(I, I, attempts=I, incident=I, kind=I),
    "raid.alerts.taken": _event(I, I, incidents=I, skipped=I, sources=I, taken=I),
    "raid.reminders.queued": _event(I, I, count=I),
    "raid.contact.saved": _event(I, I, name=I),
    "raid.routing.adopted": _event(I, P, digest=P, number=P, version=P),
    "raid.stix.exported": _event(I, I, incidents=I),
    "raid.stix.imported": _event(I, I, incidents=I, skipped=I, taken=I),
}


def fields_of(action: str) -> EventFields:
    """The classification of an action's fields; an unknown action withholds everything."""
    return CLASSIFICATION.get(action, FAIL_CLOSED)
