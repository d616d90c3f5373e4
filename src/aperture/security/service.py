"""Use cases of the security desk: the seal's custody, grants, single-use downloads, canaries, alerts.

Every use case authorizes through `AccessService.authorize` (Cedar), changes state in one
transaction with its audit event, and fails closed: a refused request changes nothing but the
log (and, where it looks like an attack, raises an alert).
"""

from __future__ import annotations

import secrets
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aperture.access.domain import (
    OPERATOR,
    Action,
    AssetKind,
    AssetRef,
    Caller,
    Classification,
    Decision,
    PrincipalKind,
    Role,
    distinct_hands,
)
from aperture.access.service import AccessService
from aperture.audit.service import AuditLog
from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.core.errors import ApertureError, Conflict, Forbidden, InvalidInput, NotFound
from aperture.core.ids import new_id
from aperture.registry.domain import ArtifactFile, ModelVersion
from aperture.registry.service import RegistryService, version_asset
from aperture.security import store
from aperture.security.domain import (
    BASELINE_DAYS,
    TOKEN_PREFIX,
    Alert,
    AlertKind,
    Grant,
    Severity,
    approve,
    check_token,
    download_surge,
    needs_security_officer,
    new_grant,
    revoke,
    token_hash,
)
from aperture.vault.service import SealStatus, ShareReceipt, VaultService

if TYPE_CHECKING:
    from aperture.settings import Settings

STREAM_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SecuritySettings:
    grant_max_hours: int = 72
    token_ttl: timedelta = timedelta(minutes=5)
    anomaly_factor: float = 3.0
    anomaly_min_downloads: int = 5


def security_settings(settings: Settings) -> SecuritySettings:
    return SecuritySettings(
        grant_max_hours=settings.grant_max_hours,
        token_ttl=timedelta(seconds=settings.download_token_ttl_s),
        anomaly_factor=settings.anomaly_factor,
        anomaly_min_downloads=settings.anomaly_min_downloads,
    )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # shown once; only its hash is stored
    grant_id: str
    path: str | None
    expires_at: datetime


@dataclass(frozen=True)
class Download:
    """A download, ready to stream: the file name, its size when known, and the byte chunks."""

    filename: str
    size: int | None
    media_type: str
    chunks: Iterator[bytes]


@dataclass(frozen=True, slots=True)
class GrantView:
    grant: Grant
    label: str  # NAME:VERSION, shown only to those cleared for it
    state: str


class SecurityService:
    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        clock: Clock,
        access: AccessService,
        vault: VaultService,
        registry: RegistryService,
        config: SecuritySettings | None = None,
    ) -> None:
        self.database = database
        self.audit = audit
        self.clock = clock
        self.access = access
        self.vault = vault
        self.registry = registry
        self.config = config or SecuritySettings()

    # --- the seal -------------------------------------------------------------------------

    def init_seal(self, caller: Caller, custodians: list[str], threshold: int) -> list[tuple[str, str]]:
        """Make the upper tier's key and split it k-of-n among named key custodians. Returns each
        custodian's share text, to hand out once: nothing here keeps it."""
        self.access.require_instance(caller, Action.MANAGE_PRINCIPALS)
        for name in custodians:
            principal = self.access.get_principal(name)
            if Role.KEY_CUSTODIAN not in principal.roles or principal.kind is not PrincipalKind.PERSON:
                raise InvalidInput(f"{name} is not a key custodian", hint=f"give {name} the key_custodian role first")
        with self.database.transaction() as connection:
            keyring_id, shares = self.vault.init_seal(connection, custodians, threshold, self.clock.now())
            self.audit.append(
                connection,
                actor=caller.actor,
                action="security.seal.initialised",
                resource=f"keyring:{keyring_id}",
                details={"threshold": threshold, "custodians": list(custodians)},
            )
        return [(custodian, share.text) for custodian, share in shares]

    def seal_status(self, caller: Caller) -> SealStatus:
        """Whether the upper tier is sealed and who its custodians are (any signed-in caller)."""
        self.access.require_instance(caller, Action.VIEW)
        return self.vault.seal_status()

    def present_share(self, caller: Caller, share_text: str) -> ShareReceipt:
        """A key custodian presents their share. A wrong or repeated share is refused, audited,
        raises an alert, and leaves the shares presented so far as they were."""
        self.access.require_instance(caller, Action.UNSEAL)
        try:
            receipt = self.vault.present_share(caller.principal, share_text)
        except (InvalidInput, Conflict) as refused:
            self.audit.record(
                actor=caller.actor,
                action="security.seal.share_refused",
                resource="seal:upper",
                details={"problem": refused.message, "origin": caller.origin},
            )
            if isinstance(refused, InvalidInput):
                self._alert(
                    Severity.HIGH,
                    AlertKind.BAD_SHARE,
                    caller,
                    None,
                    f"{caller.principal} presented an unseal share that is not theirs",
                    {"problem": refused.message},
                )
            raise
        status = receipt.status
        self.audit.record(
            actor=caller.actor,
            action="security.seal.unsealed" if receipt.unsealed_now else "security.seal.share_presented",
            resource="seal:upper",
            details={"share_index": receipt.index, "presented": status.presented, "threshold": status.threshold},
        )
        return receipt

    def seal(self, caller: Caller) -> SealStatus:
        self.access.require_instance(caller, Action.SEAL)
        self.vault.seal()
        self.audit.record(actor=caller.actor, action="security.seal.sealed", resource="seal:upper")
        return self.vault.seal_status()

    # --- grants ---------------------------------------------------------------------------

    def request_grant(
        self,
        caller: Caller,
        reference: str,
        action: Action,
        *,
        reason: str,
        hours: float = 8,
        hub: str | None = None,
    ) -> Grant:
        version = self.registry.find_version(reference, caller)
        asset = version_asset(version.id)
        self.access.require(caller, Action.REQUEST_GRANT, asset, what=f"version {reference}")
        classification = self._classification(asset)
        now = self.clock.now()
        grant = new_grant(
            id=new_id(),
            asset=asset,
            action=action,
            requester=caller.principal,
            reason=reason,
            hub=hub,
            hours=hours,
            max_hours=self.config.grant_max_hours,
            level=classification.level,
            now=now,
            requester_issuers=caller.issued_by,
        )
        with self.database.transaction() as connection:
            store.insert_grant(connection, grant)
            self.audit.append(
                connection,
                actor=caller.actor,
                action="security.grant.requested",
                resource=asset.audit_resource,
                details={"grant_id": grant.id, "action": action.value, "seconds": int(grant.duration.total_seconds())},
                upper_tier=True,
            )
        return grant

    def approve_grant(self, caller: Caller, grant_id: str) -> Grant:
        """A second person approves: a distinct principal with an approver role, cleared for the
        asset, and not acting with a key the requester issued (nor the requester with one theirs)."""
        grant = self._visible_grant(caller, grant_id)
        classification = self._classification(grant.asset)
        facts = self._approval_facts(caller, grant)
        as_officer = (
            needs_security_officer(grant.action, classification.level)
            and grant.officer is None
            and self.access.permits(caller, Action.APPROVE_GRANT, grant.asset, **facts, as_officer=True)
        )
        decision = self.access.authorize(caller, Action.APPROVE_GRANT, grant.asset, **facts, as_officer=as_officer)
        if not decision.allowed:
            self.audit.record(
                actor=caller.actor,
                action="security.grant.approval_refused",
                resource=grant.asset.audit_resource,
                details={"grant_id": grant.id, "reasons": list(decision.reasons)},
                upper_tier=classification.level.upper_tier,
            )
            if caller.principal == grant.requester:
                raise Forbidden("nobody approves their own request", hint="a second person must approve it")
            if not facts["second_person"]:
                raise Forbidden(
                    "an approval with a key the requester issued (or from the issuer of the requester's key) "
                    "is not a second person's",
                    hint="a second person, acting with a key of their own, must approve it (two-person rule)",
                )
            raise Forbidden(
                "you may not approve this grant (" + (", ".join(decision.reasons) or "no policy permits it") + ")",
                hint="a programme director, security officer or chief scientist cleared for the asset approves grants",
            )
        now = self.clock.now()
        try:
            approved = approve(
                grant,
                caller.principal,
                is_officer=as_officer,
                level=classification.level,
                now=now,
                approver_issuers=caller.issued_by,
            )
        except ApertureError as refused:
            self.audit.record(
                actor=caller.actor,
                action="security.grant.approval_refused",
                resource=grant.asset.audit_resource,
                details={"grant_id": grant.id, "problem": refused.message},
                upper_tier=classification.level.upper_tier,
            )
            raise
        with self.database.transaction() as connection:
            if not store.update_grant(connection, grant, approved):
                raise Conflict("the grant changed meanwhile", hint="reload it and try again")
            self.audit.append(
                connection,
                actor=caller.actor,
                action="security.grant.approved" if approved.status.value == "approved" else "security.grant.endorsed",
                resource=grant.asset.audit_resource,
                details={
                    "grant_id": grant.id,
                    "expires_at": None if approved.expires_at is None else approved.expires_at.isoformat(),
                },
                upper_tier=classification.level.upper_tier,
            )
        return approved

    @staticmethod
    def _approval_facts(caller: Caller, grant: Grant) -> dict[str, Any]:
        """What the two-person policies look at: whose request it is, and whether the caller is a
        second person (another principal, and neither issued the key the other acts with)."""
        second = distinct_hands(grant.requester, grant.requester_issuers, caller.principal, caller.issued_by)
        return {"requester": grant.requester, "second_person": second}

    def revoke_grant(self, caller: Caller, grant_id: str) -> Grant:
        """Its requester or an approver (or the security desk) revokes a grant."""
        grant = self._visible_grant(caller, grant_id)
        involved = caller.principal in (grant.requester, grant.approver, grant.officer)
        self.access.require(caller, Action.REVOKE_GRANT, grant.asset, what=f"grant {grant_id}", involved=involved)
        revoked = revoke(grant, caller.principal, self.clock.now())
        with self.database.transaction() as connection:
            if not store.update_grant(connection, grant, revoked):
                raise Conflict("the grant changed meanwhile", hint="reload it and try again")
            self.audit.append(
                connection,
                actor=caller.actor,
                action="security.grant.revoked",
                resource=grant.asset.audit_resource,
                details={"grant_id": grant.id},
                upper_tier=True,
            )
        return revoked

    def get_grant(self, caller: Caller, grant_id: str) -> GrantView:
        grant = self._visible_grant(caller, grant_id)
        return self._view(grant)

    def list_grants(self, caller: Caller) -> list[GrantView]:
        """The security desk sees every grant; others their own requests and those they may
        approve (pending, on assets they are cleared for)."""
        with self.database.read() as connection:
            grants = store.list_grants(connection)
        desk = self.access.permits(caller, Action.VIEW_SECURITY)
        views: list[GrantView] = []
        for grant in grants:
            if (
                desk
                or grant.requester == caller.principal
                or caller.principal in (grant.approver, grant.officer)
                or (
                    grant.status.value == "pending"
                    and self.access.permits(
                        caller, Action.APPROVE_GRANT, grant.asset, **self._approval_facts(caller, grant)
                    )
                )
            ) and self.access.authorize(caller, Action.VIEW, grant.asset, purpose="list").allowed:
                views.append(self._view(grant))
        return views

    def _view(self, grant: Grant) -> GrantView:
        classification = self.access.lookup(grant.asset)
        return GrantView(
            grant, classification.label if classification else grant.asset.uid, grant.state(self.clock.now())
        )

    def _visible_grant(self, caller: Caller, grant_id: str) -> Grant:
        with self.database.read() as connection:
            grant = store.load_grant(connection, grant_id)
        missing = NotFound(f"no grant {grant_id}", hint="GET /api/v1/grants lists the grants you may see")
        if grant is None:
            raise missing
        if not self.access.authorize(caller, Action.VIEW, grant.asset).allowed:
            raise missing
        return grant

    def _classification(self, asset: AssetRef) -> Classification:
        found = self.access.lookup(asset)
        if found is None:
            raise NotFound(f"no asset {asset.uid}", hint="check the reference")
        return found

    # --- single-use download tokens -------------------------------------------------------

    def issue_token(self, caller: Caller, grant_id: str, path: str | None = None) -> IssuedToken:
        """A single-use, short-lived token for one download under an approved grant (the
        requester's own). A download names one file; an export or a copy to a hub takes all."""
        grant = self._visible_grant(caller, grant_id)
        if grant.requester != caller.principal:
            self._refused(caller, grant, "not the requester", "security.token.refused")
            raise Forbidden("only the requester downloads under a grant", hint="request your own grant")
        now = self.clock.now()
        if not grant.usable(now):
            self._refused(caller, grant, grant.state(now), "security.token.refused")
            raise Forbidden(f"the grant is {grant.state(now)}", hint="request a new grant and have it approved")
        decision = self.access.authorize(
            caller, grant.action, grant.asset, grant=True, security_officer_approved=grant.officer is not None
        )
        if not decision.allowed:  # a key scoped to fewer actions, say
            self._refused(caller, grant, "policy: " + ", ".join(decision.reasons), "security.token.refused")
            raise Forbidden(
                "the policies refuse this download (" + (", ".join(decision.reasons) or "no policy permits it") + ")",
                hint="see `aperture access explain`",
            )
        version = self._version(grant)
        if grant.action is Action.DOWNLOAD:
            if path is None:
                raise InvalidInput("a download names one file", hint="pass path=FILE (one of the version's files)")
            self._file(version, path)
        elif path is not None:
            raise InvalidInput(f"an {grant.action.value} takes the whole model", hint="leave out the path")
        token = f"{TOKEN_PREFIX}_{secrets.token_urlsafe(32)}"
        assert grant.expires_at is not None
        expires = min(now + self.config.token_ttl, grant.expires_at)
        with self.database.transaction() as connection:
            store.insert_token(connection, token_hash(token), grant.id, path, now, expires)
            self.audit.append(
                connection,
                actor=caller.actor,
                action="security.token.issued",
                resource=grant.asset.audit_resource,
                details={"grant_id": grant.id, "expires_at": expires.isoformat()},
                upper_tier=True,
            )
        return IssuedToken(token, grant.id, path, expires)

    def redeem(self, caller: Caller, token: str) -> Download:
        """Use a token once: checks the grant again (revoked or expired grants stop here), asks
        Cedar with the grant's facts (audited), records the download, then streams the plaintext."""
        check_token(token)
        digest = token_hash(token)
        now = self.clock.now()
        with self.database.read() as connection:
            found = store.load_token(connection, digest)
        unusable = NotFound("no usable download token", hint="tokens are single-use and expire within minutes")
        if found is None:
            raise unusable
        grant_id, path, expires_at, used_at = found
        with self.database.read() as connection:
            grant = store.load_grant(connection, grant_id)
        assert grant is not None
        if used_at is not None or expires_at <= now:
            self._refused(caller, grant, "replayed" if used_at is not None else "expired")
            if used_at is not None:
                self._alert(
                    Severity.MEDIUM,
                    AlertKind.TOKEN_REPLAY,
                    caller,
                    grant.asset,
                    f"a used download token was presented again by {caller.principal}",
                    {"grant_id": grant.id},
                )
            raise unusable
        if caller.principal != grant.requester:
            self._refused(caller, grant, "not the requester")
            raise unusable
        if not grant.usable(now):
            self._refused(caller, grant, grant.state(now))
            raise Forbidden(f"the grant is {grant.state(now)}", hint="request a new grant and have it approved")
        decision = self.access.authorize(
            caller,
            grant.action,
            grant.asset,
            grant=True,
            security_officer_approved=grant.officer is not None,
        )
        if not decision.allowed:
            self._refused(caller, grant, "policy: " + ", ".join(decision.reasons))
            raise Forbidden(
                "the policies refuse this download (" + (", ".join(decision.reasons) or "no policy permits it") + ")",
                hint="see `aperture access explain`",
            )
        version = self._version(grant)
        files = [self._file(version, path)] if path is not None else list(version.files)
        sealed = self.vault.sealed_copies(f"registry.version:{version.id}")
        for file in files:
            if file.sha256 not in sealed:
                raise NotFound(f"no sealed copy of {file.path}", hint="the version is not sealed; download it directly")
        self.vault.open_sealed(sealed[files[0].sha256]).close()  # fails now, not mid-stream, when sealed
        size = sum(file.size for file in files)
        with self.database.transaction() as connection:
            won = store.use_token(connection, digest, now)
            if won:
                store.insert_download(
                    connection,
                    id=new_id(),
                    principal=caller.principal,
                    asset=grant.asset,
                    grant_id=grant.id,
                    size=size,
                    now=now,
                )
                self.audit.append(
                    connection,
                    actor=caller.actor,
                    action=f"security.weights.{grant.action.value}",
                    resource=grant.asset.audit_resource,
                    details={
                        "grant_id": grant.id,
                        "files": len(files),
                        "bytes": size,
                        "origin": caller.origin,
                        "hub": grant.hub,
                    },
                    upper_tier=True,
                )
        if not won:  # a concurrent request used it first; recorded after the transaction ends
            self._refused(caller, grant, "replayed")
            raise unusable
        self._check_surge(caller, grant.asset)
        if path is not None:
            file = files[0]
            return Download(
                file.path.rsplit("/", 1)[-1],
                file.size,
                "application/octet-stream",
                self.vault.open_sealed(sealed[file.sha256]),
            )
        name = f"{version.model_name}-{version.version}.tar"
        return Download(
            name, None, "application/x-tar", _tar_stream([(f, sealed[f.sha256]) for f in files], self.vault)
        )

    def _refused(self, caller: Caller, grant: Grant, why: str, action: str = "security.download.refused") -> None:
        self.audit.record(
            actor=caller.actor,
            action=action,
            resource=grant.asset.audit_resource,
            details={"grant_id": grant.id, "why": why, "origin": caller.origin},
            upper_tier=True,
        )

    def _version(self, grant: Grant) -> ModelVersion:
        if grant.asset.kind is not AssetKind.MODEL_VERSION:
            raise InvalidInput("only model versions are downloaded", hint="check the grant")
        return self.registry.record(grant.asset.id)  # the caller was decided about already

    @staticmethod
    def _file(version: ModelVersion, path: str) -> ArtifactFile:
        """Only a path the version records, exactly: `../` tricks name no file and find none."""
        for file in version.files:
            if file.path == path:
                return file
        raise NotFound(f"no file {path!r} in {version.reference}", hint="name one of the version's files")

    # --- canaries and anomalies -----------------------------------------------------------

    def watch(self, caller: Caller, decision: Decision, classification: Classification, purpose: str) -> None:
        """The access observer: a canary read by anyone, allowed or not, is a high alert; a
        registered person reaching outside their programmes is a medium one.

        A listing that shows an asset (redacted, or by name to those cleared for it) is not a read:
        reading its protected metadata, files or weights is, and so is resolving its id
        (`access explain`). The local operator's own lookups are not either: the operator planted
        the canaries (`aperture access assets` lists them), and other use cases look versions up as
        the operator to answer the public (a release page), which must not raise alarms."""
        if purpose != "read" or caller.principal == OPERATOR:
            return
        if classification.canary:
            self._alert(
                Severity.HIGH,
                AlertKind.CANARY,
                caller,
                classification.asset,
                f"canary {classification.label} touched: {decision.action.value} by {caller.principal}",
                {"action": decision.action.value, "allowed": decision.allowed, "label": classification.label},
            )
        elif not decision.allowed and "upper-tier-need-to-know" in decision.reasons and caller.principal != "anonymous":
            self._alert(
                Severity.MEDIUM,
                AlertKind.OUTSIDE_PROGRAMMES,
                caller,
                classification.asset,
                f"{caller.principal} reached for an asset outside their programmes",
                {"action": decision.action.value, "programme": classification.programme},
            )

    def _check_surge(self, caller: Caller, asset: AssetRef) -> None:
        now = self.clock.now()
        day = timedelta(days=1)
        with self.database.read() as connection:
            times = store.download_times(connection, caller.principal, now - day * (BASELINE_DAYS + 1))
        today = sum(1 for moment in times if moment > now - day)
        past = [sum(1 for m in times if now - day * (i + 2) < m <= now - day * (i + 1)) for i in range(BASELINE_DAYS)]
        if download_surge(today, past, factor=self.config.anomaly_factor, minimum=self.config.anomaly_min_downloads):
            self._alert(
                Severity.MEDIUM,
                AlertKind.DOWNLOAD_SURGE,
                caller,
                asset,
                f"{caller.principal} made {today} downloads today, far above their baseline",
                {"today": today, "baseline_per_day": round(sum(past) / len(past), 2)},
            )

    def _alert(
        self,
        severity: Severity,
        kind: AlertKind,
        caller: Caller,
        asset: AssetRef | None,
        summary: str,
        details: dict[str, Any],
    ) -> Alert:
        alert = Alert(
            id=new_id(),
            raised_at=self.clock.now(),
            severity=severity,
            kind=kind,
            principal=caller.actor,
            asset=asset,
            origin=caller.origin,
            summary=summary,
            details=details,
        )
        with self.database.transaction() as connection:
            store.insert_alert(connection, alert)
            self.audit.append(
                connection,
                actor="security-watch",
                action="security.alert.raised",
                resource=f"alert:{alert.id}",
                details={"severity": severity.value, "kind": kind.value},
            )
        return alert

    def alerts(self, caller: Caller, *, open_only: bool = False, limit: int = 200) -> list[Alert]:
        self.access.require_instance(caller, Action.VIEW_SECURITY)
        with self.database.read() as connection:
            return store.list_alerts(connection, limit=limit, open_only=open_only)

    def acknowledge(self, caller: Caller, alert_id: str) -> None:
        self.access.require_instance(caller, Action.ACKNOWLEDGE_ALERT)
        with self.database.transaction() as connection:
            if not store.acknowledge_alert(connection, alert_id, caller.actor, self.clock.now()):
                raise NotFound(f"no open alert {alert_id}", hint="GET /api/v1/security/alerts lists them")
            self.audit.append(
                connection, actor=caller.actor, action="security.alert.acknowledged", resource=f"alert:{alert_id}"
            )


def _tar_stream(files: list[tuple[ArtifactFile, Any]], vault: VaultService) -> Iterator[bytes]:
    """A POSIX tar of the files, built as it streams (no file is held in memory)."""
    for file, row in files:
        info = tarfile.TarInfo(file.path)
        info.size = file.size
        info.mode = 0o644
        yield info.tobuf(tarfile.PAX_FORMAT)
        yield from vault.open_sealed(row)
        padding = (-file.size) % tarfile.BLOCKSIZE
        if padding:
            yield b"\0" * padding
    yield b"\0" * (tarfile.BLOCKSIZE * 2)
