"""Use cases of the inference gateway: keys, bindings, grants, limits, prices, policies; and the
path of one request: who may call what, limits, the safety layer, the backend, metering.

The one decision "may this organisation call this model version" is `GatewayService.may_call`;
listing and calling both go through it, and a version it refuses reads exactly like one that
does not exist (404). Hot-path state (bindings, tiers, grants, limits, prices, policies) is read
from the database into a snapshot that is never served older than `cache_s` seconds
(`gateway.freshness`); changes made through this process apply at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from aperture.access.domain import SYSTEM, Action, Caller
from aperture.access.refusals import ask, ask_instance
from aperture.access.service import AccessService
from aperture.audit.service import AuditLog
from aperture.core.clock import Clock
from aperture.core.db import Database
from aperture.core.errors import ApertureError, Forbidden, InvalidInput, NotFound, Unauthenticated
from aperture.core.ids import new_id
from aperture.gateway import store
from aperture.gateway.backends import Clients, RemoteBackend
from aperture.gateway.domain import (
    KEY_PREFIX,
    UNLIMITED,
    USAGE_COLUMNS,
    Alert,
    Backend,
    BackendKind,
    Block,
    Bucket,
    CompiledRules,
    DailyUsage,
    GatewayCaller,
    GatewayKey,
    Limits,
    Price,
    SafetyPolicy,
    ScopeKind,
    Stage,
    UsageRecord,
    check_backend_url,
    check_limits,
    check_price,
    excerpt,
    key_hash,
    month_of,
    parse_key,
    repeated_blocks,
    retry_after_header,
    tier_allows,
)
from aperture.gateway.engine import BatchingEngine, Event, Generation, Sampling, Tokens
from aperture.gateway.freshness import Fresh, StateUnavailable
from aperture.gateway.limits import Limiter, Quota
from aperture.gateway.metering import Meter
from aperture.gateway.safety import Classifier, build_classifier, parse_classifier
from aperture.registry.domain import ModelVersion, parse_reference
from aperture.registry.service import RegistryService, version_asset
from aperture.release.domain import Tier
from aperture.release.service import ReleaseService
from aperture.vault.service import VaultService

log = logging.getLogger("aperture.gateway")

ALERT_ROLES = "administrator, security_officer or raid_analyst"


class RateLimited(ApertureError):
    code = "rate_limit_exceeded"
    http_status = 429
    exit_code = 9

    def __init__(self, message: str, *, retry_after_s: float, code: str = "rate_limit_exceeded") -> None:
        super().__init__(message, hint=f"retry after {retry_after_header(retry_after_s)} s", details={"code": code})
        self.retry_after = retry_after_header(retry_after_s)


class EngineFailed(ApertureError):
    code = "engine_failed"
    http_status = 500
    exit_code = 1


class ContentBlocked(ApertureError):
    code = "content_blocked"
    http_status = 403
    exit_code = 6


@dataclass(frozen=True)
class GatewayConfig:
    cache_s: float = 1.0
    refresh_wait_s: float = 5.0
    max_body_bytes: int = 1024 * 1024
    max_tokens: int = 2048
    default_max_tokens: int = 256
    batch_size: int = 32
    threads: int = 0
    meter_interval_s: float = 1.0
    alert_blocks: int = 3
    alert_window_s: int = 600
    health_interval_s: int = 30


@dataclass(frozen=True)
class ServedModel:
    id: str  # NAME:VERSION
    version: ModelVersion
    backend: Backend
    tier: Tier | None
    granted: frozenset[str]  # organisations with an explicit grant

    @property
    def created(self) -> int:
        return int(self.version.registered_at.timestamp())


@dataclass(frozen=True)
class Checks:
    policy: SafetyPolicy
    input: CompiledRules
    output: CompiledRules


@dataclass
class Snapshot:
    models: dict[str, ServedModel]
    limits: dict[tuple[ScopeKind, str], Limits]
    prices: dict[str, Price]
    checks: dict[str, Checks]


@dataclass(frozen=True)
class CompletionRequest:
    """A validated `/v1/chat/completions` (messages) or `/v1/completions` (prompt) request."""

    kind: Literal["chat", "text"]
    model: str
    messages: tuple[dict[str, str], ...] = ()
    prompt: str = ""
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias)
    stream: bool = False
    forward: dict[str, Any] = field(default_factory=dict)  # the fields a remote server is sent

    @property
    def text(self) -> str:
        """What the input checks read."""
        return "\n".join(m["content"] for m in self.messages) if self.kind == "chat" else self.prompt


@dataclass
class Admitted:
    """A request past every check, holding its reservation until it is settled."""

    id: str
    caller: GatewayCaller
    model: ServedModel
    request: CompletionRequest
    max_new_tokens: int
    prompt_ids: list[int] | None
    prompt_tokens: int | None
    charges: list[tuple[Bucket, float]]
    quotas: list[Quota]
    reserved: int
    checks: Checks | None = None  # the output checks of the snapshot it was admitted under
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class IssuedGatewayKey:
    key: GatewayKey
    text: str


class GatewayService:
    def __init__(
        self,
        database: Database,
        audit: AuditLog,
        clock: Clock,
        access: AccessService,
        registry: RegistryService,
        release: ReleaseService,
        vault: VaultService,
        limiter: Limiter,
        *,
        work_dir: Path,
        config: GatewayConfig | None = None,
        licensees: Callable[[str, str], frozenset[str]] | None = None,
    ) -> None:
        self.database = database
        # Who holds a licence in force on NAME:VERSION (licensing); None: grants alone decide.
        self.licensees = licensees
        self.audit = audit
        self.clock = clock
        self.access = access
        self.registry = registry
        self.release = release
        self.vault = vault
        self.limiter = limiter
        self.work_dir = work_dir
        self.config = config or GatewayConfig()
        self.clients = Clients()
        self.meter = Meter(
            database,
            work_dir / "usage-log",
            lambda: self.snapshot().prices,
            clock,
            interval_s=self.config.meter_interval_s,
        )
        self._snapshots: Fresh[Snapshot] = Fresh(
            self._load_snapshot,
            max_age_s=self.config.cache_s,
            wait_s=self.config.refresh_wait_s,
            what="bindings, grants and limits",
        )
        self._keys: dict[str, tuple[GatewayKey, bytes, float]] = {}
        self._engines: dict[str, BatchingEngine] = {}
        self._tokens: dict[str, Tokens | None] = {}
        self._classifiers: dict[str, Classifier] = {}
        self._load_lock = threading.Lock()
        self.health: dict[str, tuple[bool, str, datetime]] = {}

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Replay usage left by dead replicas, start the meter, load the bound models (the server
        calls this before it accepts requests)."""
        self.meter.start()
        self.warm()

    def close(self) -> None:
        self.meter.close()
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()

    async def aclose(self) -> None:
        await self.clients.aclose()
        await self.limiter.aclose()

    # --- the snapshot of hot-path state -------------------------------------------------------

    def invalidate(self) -> None:
        """A change made through this process: the next request waits for a fresh snapshot."""
        self._snapshots.invalidate()
        self._keys.clear()

    def snapshot(self) -> Snapshot:
        """The hot-path state for callers off the event loop (the meter, the CLI, pages): read
        again in this thread when older than `cache_s`."""
        return self._snapshots.get_blocking()

    async def current(self) -> Snapshot:
        """The hot-path state for a request: never older than `cache_s` seconds. When it is (after
        an idle period), the request waits for a fresh read, at most `refresh_wait_s`, and fails
        closed with a 503 if the database cannot be read. Refreshed in the background past half its
        age, so that under steady traffic no request waits."""
        return await self._snapshots.get()

    def warm(self) -> None:
        """Load every bound version's engine or tokenizer before traffic arrives."""
        for model in self.snapshot().models.values():
            try:
                if model.backend.kind is BackendKind.EMBEDDED:
                    self.engine(model)
                else:
                    self.tokens(model)
            except (ApertureError, OSError) as error:
                log.warning("could not prepare %s: %s", model.id, error)

    def _load_snapshot(self) -> Snapshot:
        with self.database.read() as connection:
            backends = store.list_backends(connection)
            grants = store.list_grants(connection)
            limits = store.list_limits(connection)
            prices = store.list_prices(connection)
            policies = store.list_policies(connection)
        granted: dict[str, set[str]] = {}
        for organisation, model in grants:
            granted.setdefault(model, set()).add(organisation)
        models: dict[str, ServedModel] = {}
        for backend in backends:
            name, version = parse_reference(backend.model)
            try:
                record = self.registry.get_version(name, version, SYSTEM)
                tier = self.release.tier_of(name, version)
            except NotFound:
                continue
            allowed = frozenset(granted.get(backend.model, ()))
            if tier is Tier.LICENSED and self.licensees is not None:
                # Licensees are served while their licence is in force: suspending, revoking or
                # expiring it cuts their gateway access at the next refresh (an explicit grant is a
                # separate act, revoked with `aperture gateway grant --revoke`).
                allowed |= self.licensees(name, version)
            models[backend.model] = ServedModel(backend.model, record, backend, tier, allowed)
        checks = {
            model: Checks(policy, CompiledRules.of(policy.input), CompiledRules.of(policy.output))
            for model, policy in policies.items()
        }
        return Snapshot(models, limits, prices, checks)

    # --- who may call what ------------------------------------------------------------------

    def may_call(self, caller: GatewayCaller, model: ServedModel) -> bool:
        """The one decision: may this caller's organisation call this model version through the
        gateway? The release tier decides (no decision yet: no); licensed versions also need a
        licence in force or an explicit grant to the organisation, secured ones an explicit grant."""
        return tier_allows(model.tier, caller.organisation in model.granted)

    async def models_for(self, caller: GatewayCaller) -> list[ServedModel]:
        snapshot = await self.current()
        return [m for m in snapshot.models.values() if self.may_call(caller, m)]

    async def resolve(self, caller: GatewayCaller, model_id: str) -> ServedModel:
        return self._resolve(await self.current(), caller, model_id)

    def _resolve(self, snapshot: Snapshot, caller: GatewayCaller, model_id: str) -> ServedModel:
        found = snapshot.models.get(model_id)
        if found is None or not self.may_call(caller, found):
            raise NotFound(
                f"the model {model_id!r} does not exist or you do not have access to it",
                hint="GET /v1/models lists the models your key may call",
                details={"code": "model_not_found", "param": "model"},
            )
        return found

    # --- keys -------------------------------------------------------------------------------

    def authenticate(self, key_text: str | None) -> GatewayCaller:
        if not key_text:
            raise Unauthenticated(
                "no API key was sent", hint="send `Authorization: Bearer gwk_...` with a key of your organisation"
            )
        key_id = parse_key(key_text)
        if key_id is None:
            raise Unauthenticated("the API key is malformed", hint="gateway keys look like gwk_<id>_<secret>")
        cached = self._keys.get(key_id)
        if cached is None or time.monotonic() - cached[2] >= self.config.cache_s:
            try:
                with self.database.read() as connection:
                    found = store.load_key(connection, key_id)
            except Exception as error:  # fail closed: a key that cannot be checked is not trusted
                log.warning("could not read gateway key %s: %s", key_id, error)
                raise StateUnavailable(
                    f"the gateway could not check the API key ({type(error).__name__})",
                    hint="retry shortly; the gateway's database is unreachable",
                ) from None
            if found is None:
                raise Unauthenticated(
                    "the API key is not known", hint="ask your organisation's administrator for a key"
                )
            cached = (found[0], found[1], time.monotonic())
            self._keys[key_id] = cached
        key, digest, _ = cached
        if key_hash(key_text) != digest:
            raise Unauthenticated("the API key is not known", hint="ask your organisation's administrator for a key")
        if not key.usable(self.clock.now()):
            raise Unauthenticated(
                f"the API key is {key.state(self.clock.now())}",
                hint="ask your organisation's administrator for a new key",
            )
        return GatewayCaller(key.key_id, key.organisation)

    def _require(self, caller: Caller, action: Action = Action.MANAGE_GATEWAY, **facts: bool) -> None:
        """An instance-wide act on the gateway: the access service decides (and audits a refusal)."""
        wanted = "the role administrator" if action is not Action.VIEW_GATEWAY_ALERTS else "the role " + ALERT_ROLES
        ask_instance(
            self.access, caller, action, message=f"this needs {wanted}", hint="ask an administrator", facts=facts
        )

    def _configurable(self, caller: Caller, reference: str) -> ModelVersion:
        """A version an administrator cleared for it configures (bind, grant, price, policy): one the
        caller may not see reads exactly like one that does not exist."""
        version = self.registry.find_version(reference, caller)
        missing = NotFound(f"no version {reference}", hint="`aperture models list` shows the registered models")
        ask(
            self.access,
            caller,
            Action.CONFIGURE_GATEWAY_MODEL,
            version_asset(version.id),
            missing=missing,
            message="this needs the role administrator",
            hint="ask an administrator",
        )
        return version

    def _upper(self, version: ModelVersion) -> bool:
        found = self.registry.classification(version)
        return found is None or found.level.upper_tier

    def _require_organisation(self, name: str) -> None:
        if name not in {o.name for o in self.access.list_organisations()}:
            raise NotFound(
                f"no organisation named {name!r}", hint="`aperture access add-organisation` records one first"
            )

    def issue_key(
        self, caller: Caller, *, organisation: str, name: str, expires_at: datetime | None = None
    ) -> IssuedGatewayKey:
        import secrets

        self._require(caller)
        if not name.strip():
            raise InvalidInput("a key needs a name", hint="pass --name, e.g. the application using it")
        self._require_organisation(organisation)
        now = self.clock.now()
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("the expiry is in the past", hint="give a future time, or none")
        with self.database.transaction() as connection:
            while True:
                key_id = secrets.token_hex(4)
                if store.load_key(connection, key_id) is None:
                    break
            text = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
            key = GatewayKey(key_id, name.strip(), organisation, now, caller.actor, expires_at, None)
            store.insert_key(connection, key, key_hash(text))
            self.audit.append(
                connection,
                actor=caller.actor,
                action="gateway.key.issued",
                resource=f"gateway-key:{key_id}",
                details={
                    "organisation": organisation,
                    "name": key.name,
                    "expires_at": None if expires_at is None else expires_at.isoformat(),
                },
            )
        return IssuedGatewayKey(key, text)

    def revoke_key(self, caller: Caller, key_id: str) -> GatewayKey:
        self._require(caller)
        with self.database.transaction() as connection:
            found = store.load_key(connection, key_id)
            if found is None:
                raise NotFound(f"no gateway key {key_id}", hint="`aperture gateway keys list` shows the keys")
            store.revoke_key(connection, key_id, self.clock.now())
            self.audit.append(
                connection, actor=caller.actor, action="gateway.key.revoked", resource=f"gateway-key:{key_id}"
            )
        self.invalidate()
        return replace(found[0], revoked_at=self.clock.now())

    def list_keys(self, caller: Caller, organisation: str | None = None) -> list[GatewayKey]:
        self._require(caller)
        with self.database.read() as connection:
            return store.list_keys(connection, organisation)

    # --- bindings, grants, limits, prices, policies -----------------------------------------

    def bind(
        self,
        caller: Caller,
        reference: str,
        kind: BackendKind,
        *,
        url: str | None = None,
        remote_model: str | None = None,
        timeout_s: float = 60.0,
        api_key: str | None = None,
    ) -> Backend:
        version = self._configurable(caller, reference)
        if kind is BackendKind.REMOTE:
            if not url:
                raise InvalidInput("a remote backend needs a URL", hint="pass --url http://host:port/v1")
            url = check_backend_url(url)
            remote_model = remote_model or version.model_name
        elif url or remote_model or api_key:
            raise InvalidInput("the embedded engine takes no URL", hint="drop --url and --remote-model")
        elif self.registry.is_sealed(version):
            raise Forbidden(
                f"{version.reference} is an upper-tier (sealed) version: its weights are not run in this process",
                hint="serve it inside the secure enclave and bind a remote backend (--url)",
            )
        if not 0 < timeout_s <= 3600:
            raise InvalidInput("the timeout must be between 0 and 3600 seconds", hint="e.g. --timeout 60")
        backend = Backend(
            version.reference,
            version.id,
            kind,
            url,
            remote_model,
            float(timeout_s),
            self.clock.now(),
            caller.actor,
            api_key or None,
        )
        with self.database.transaction() as connection:
            store.put_backend(connection, backend)
            self.audit.append(
                connection,
                actor=caller.actor,
                action="gateway.backend.bound",
                resource=self.registry.log_name(version),
                details={"kind": kind.value, "url": url, "remote_model": remote_model, "timeout_s": str(timeout_s)},
                upper_tier=self._upper(version),
            )
        self.invalidate()
        return backend

    def unbind(self, caller: Caller, reference: str) -> None:
        version = self._configurable(caller, reference)
        reference = version.reference
        with self.database.transaction() as connection:
            if not store.delete_backend(connection, reference):
                raise NotFound(f"{reference} is not bound to a backend", hint="`aperture gateway backends list`")
            self.audit.append(
                connection,
                actor=caller.actor,
                action="gateway.backend.removed",
                resource=self.registry.log_name(version),
                upper_tier=self._upper(version),
            )
        engine = self._engines.pop(reference, None)
        if engine is not None:
            engine.close()
        self.invalidate()

    def backends(self) -> list[Backend]:
        with self.database.read() as connection:
            return store.list_backends(connection)

    def list_backends(self, caller: Caller) -> list[Backend]:
        """The bindings, for the gateway's operators."""
        self._require(caller)
        return self.backends()

    def grant(self, caller: Caller, organisation: str, reference: str, *, revoke: bool = False) -> None:
        """An explicit grant: the organisation may call this licensed or secured version."""
        version = self._configurable(caller, reference)
        self._require_organisation(organisation)
        with self.database.transaction() as connection:
            if revoke:
                if not store.delete_grant(connection, organisation, version.reference):
                    raise NotFound(f"{organisation} holds no grant for {version.reference}", hint="nothing to revoke")
            else:
                store.put_grant(connection, organisation, version.reference, self.clock.now(), caller.actor)
            self.audit.append(
                connection,
                actor=caller.actor,
                action="gateway.grant.revoked" if revoke else "gateway.grant.given",
                resource=self.registry.log_name(version),
                details={"organisation": organisation},
                upper_tier=self._upper(version),
            )
        self.invalidate()

    def grants(self) -> list[tuple[str, str]]:
        with self.database.read() as connection:
            return store.list_grants(connection)

    def set_limits(self, caller: Caller, kind: ScopeKind, scope: str, limits: Limits) -> None:
        self._require(caller)
        check_limits(limits)
        if kind is ScopeKind.ORGANISATION:
            self._require_organisation(scope)
        else:
            with self.database.read() as connection:
                if store.load_key(connection, scope) is None:
                    raise NotFound(f"no gateway key {scope}", hint="`aperture gateway keys list` shows the keys")
        with self.database.transaction() as connection:
            store.put_limits(connection, kind, scope, limits, self.clock.now())
            self.audit.append(
                connection,
                actor=caller.actor,
                action="gateway.limits.set",
                resource=f"gateway-{kind.value}:{scope}",
                details=limits.as_dict(),
            )
        self.invalidate()

    def limits(self) -> dict[tuple[ScopeKind, str], Limits]:
        return dict(self.snapshot().limits)

    def set_price(self, caller: Caller, reference: str, input_eur: float, output_eur: float) -> Price:
        version = self._configurable(caller, reference)
        check_price(input_eur, output_eur)
        price = Price(version.reference, input_eur, output_eur)
        with self.database.transaction() as connection:
            store.put_price(connection, price, self.clock.now())
            self.audit.append(
                connection,
                actor=caller.actor,
                action="gateway.price.set",
                resource=self.registry.log_name(version),
                details={"input_eur_per_mtok": str(input_eur), "output_eur_per_mtok": str(output_eur)},
                upper_tier=self._upper(version),
            )
        self.invalidate()
        return price

    def prices(self) -> dict[str, Price]:
        return dict(self.snapshot().prices)

    def set_policy(self, caller: Caller, reference: str, data: dict[str, Any]) -> SafetyPolicy:
        version = self._configurable(caller, reference)
        policy = SafetyPolicy.from_dict(version.reference, data)
        if policy.classifier:
            parse_classifier(policy.classifier)
        with self.database.transaction() as connection:
            store.put_policy(connection, policy, self.clock.now())
            self.audit.append(
                connection,
                actor=caller.actor,
                action="gateway.policy.set",
                resource=self.registry.log_name(version),
                upper_tier=self._upper(version),
                details={
                    "input_rules": len(policy.input.keywords) + len(policy.input.patterns),
                    "output_rules": len(policy.output.keywords) + len(policy.output.patterns),
                    "classifier": policy.classifier is not None,
                },
            )
        self._classifiers.pop(version.reference, None)
        self.invalidate()
        return policy

    def policies(self) -> dict[str, SafetyPolicy]:
        return {model: checks.policy for model, checks in self.snapshot().checks.items()}

    # --- usage, blocks, alerts ----------------------------------------------------------------

    def usage(
        self,
        caller: Caller,
        *,
        organisation: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[DailyUsage]:
        """Daily totals. An administrator sees every organisation; a person sees their own."""
        own = self._organisation_of(caller)
        ask_instance(
            self.access,
            caller,
            Action.VIEW_GATEWAY_USAGE,
            message="you may see only your own organisation's usage",
            hint="ask an administrator for other reports",
            facts={"own_organisation": own is not None and organisation in (None, own)},
        )
        if organisation is None:  # every organisation's usage for whoever may see others', else one's own
            others = self.access.decide(caller, Action.VIEW_GATEWAY_USAGE, facts={"own_organisation": False})
            organisation = None if others.allowed else own
        for value in (since, until):
            if value is not None:
                try:
                    datetime.strptime(value, "%Y-%m-%d")  # noqa: DTZ007 - a calendar day, no time
                except ValueError:
                    raise InvalidInput(f"{value!r} is not a day", hint="write days as YYYY-MM-DD") from None
        self.meter.flush()
        with self.database.read() as connection:
            return store.usage(connection, organisation=organisation, since=since, until=until)

    def _organisation_of(self, caller: Caller) -> str | None:
        try:
            return self.access.get_principal(caller.principal).organisation
        except NotFound:
            return None

    def organisation_of(self, caller: Caller) -> str | None:
        return self._organisation_of(caller)

    @staticmethod
    def usage_csv(rows: Sequence[DailyUsage]) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(USAGE_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row.as_dict())
        return buffer.getvalue()

    def alerts(self, caller: Caller, *, open_only: bool = False) -> list[Alert]:
        self._require(caller, Action.VIEW_GATEWAY_ALERTS)
        with self.database.read() as connection:
            return store.list_alerts(connection, open_only=open_only)

    def pick_up_alert(self, caller: Caller, alert_id: str) -> None:
        """The risk desk takes the alert (it stays, with its evidence)."""
        self._require(caller, Action.VIEW_GATEWAY_ALERTS)
        with self.database.transaction() as connection:
            if not store.mark_alert_picked_up(connection, alert_id, self.clock.now()):
                raise NotFound(f"no gateway alert {alert_id}", hint="`aperture gateway alerts` lists them")
            self.audit.append(
                connection, actor=caller.actor, action="gateway.alert.picked_up", resource=f"gateway-alert:{alert_id}"
            )

    def _record_block(self, block: Block) -> None:
        """Keep the block as evidence; raise an alert when one key was blocked repeatedly."""
        window = timedelta(seconds=self.config.alert_window_s)
        with self.database.transaction() as connection:
            store.insert_block(connection, block)
            recent = store.recent_blocks(connection, block.key_id, block.at - window)
            moments = [datetime.fromisoformat(item["at"]) for item in recent]
            if not repeated_blocks(moments, block.at, window.total_seconds(), self.config.alert_blocks):
                return
            last = store.last_alert_at(connection, block.key_id, "repeated_blocks")
            if last is not None and block.at - last < window:
                return  # one alert per window and key
            alert = Alert(
                id=new_id(),
                raised_at=block.at,
                kind="repeated_blocks",
                key_id=block.key_id,
                organisation=block.organisation,
                summary=f"{len(recent)} requests blocked within {self.config.alert_window_s} s from key {block.key_id}",
                evidence=tuple(recent),
            )
            store.insert_alert(connection, alert)
            self.audit.append(
                connection,
                actor="gateway",
                action="gateway.alert.raised",
                resource=f"gateway-alert:{alert.id}",
                details={"kind": alert.kind, "key_id": block.key_id, "blocks": len(recent)},
            )
        log.warning("gateway alert: %s", alert.summary)

    # --- models: weights, tokenizers, engines -------------------------------------------------

    def _model_directory(self, version: ModelVersion) -> Path:
        """The version's files as symlinks to their content-addressed blobs (no copy of the weights)."""
        files = ((file.path, file.sha256) for file in version.files)
        return self.vault.linked_directory(self.work_dir / "models", version.manifest_digest, files, version.reference)

    def engine(self, model: ServedModel) -> BatchingEngine:
        """The embedded engine of a version, loaded on first use (one per version and process)."""
        found = self._engines.get(model.id)
        if found is not None:
            return found
        with self._load_lock:
            found = self._engines.get(model.id)
            if found is None:
                if self.registry.is_sealed(model.version):
                    raise Forbidden(
                        f"{model.id} is sealed: it is not run in this process", hint="bind a remote backend"
                    )
                found = BatchingEngine(
                    self._model_directory(model.version),
                    max_batch=self.config.batch_size,
                    threads=self.config.threads or None,
                )
                self._engines[model.id] = found
        return found

    async def _loaded_engine(self, model: ServedModel) -> BatchingEngine:
        found = self._engines.get(model.id)
        return found if found is not None else await asyncio.to_thread(self.engine, model)

    def tokens(self, model: ServedModel) -> Tokens | None:
        """The version's own tokenizer, for metering remote answers; None for sealed versions (their
        files stay sealed here: the backend's reported usage is metered instead)."""
        if model.id in self._tokens:
            return self._tokens[model.id]
        with self._load_lock:
            if model.id not in self._tokens:
                found = None
                if not self.registry.is_sealed(model.version):
                    try:
                        found = Tokens.from_directory(self._model_directory(model.version))
                    except (OSError, ValueError):
                        log.warning("no tokenizer for %s: metering the backend's usage", model.id)
                self._tokens[model.id] = found
        return self._tokens[model.id]

    def _classifier(self, checks: Checks) -> Classifier | None:
        spec = checks.policy.classifier
        if spec is None:
            return None
        found = self._classifiers.get(checks.policy.model)
        if found is None:
            found = self._classifiers[checks.policy.model] = build_classifier(spec, self.clients)
        return found

    # --- one request --------------------------------------------------------------------------

    async def admit(self, caller: GatewayCaller, request: CompletionRequest) -> Admitted:
        """Resolve the model, bound the tokens, check the input, take from the limits."""
        snapshot = await self.current()
        model = self._resolve(snapshot, caller, request.model)
        key_limits = snapshot.limits.get((ScopeKind.KEY, caller.key_id), UNLIMITED)
        org_limits = snapshot.limits.get((ScopeKind.ORGANISATION, caller.organisation), UNLIMITED)
        cap = min([self.config.max_tokens] + [lim.max_tokens for lim in (key_limits, org_limits) if lim.max_tokens])
        if request.max_tokens is not None and request.max_tokens > cap:
            raise InvalidInput(
                f"max_tokens is {request.max_tokens}, above this key's limit of {cap} tokens per request",
                hint=f"ask for at most {cap} tokens",
                details={"code": "max_tokens_exceeded", "param": "max_tokens"},
            )
        max_new = request.max_tokens or min(self.config.default_max_tokens, cap)
        prompt_ids: list[int] | None = None
        prompt_tokens: int | None = None
        if model.backend.kind is BackendKind.EMBEDDED:
            engine = await self._loaded_engine(model)
            tokens: Tokens | None = engine.tokens
            vocabulary: int | None = engine.vocab_size
        else:
            tokens = self._tokens[model.id] if model.id in self._tokens else await asyncio.to_thread(self.tokens, model)
            vocabulary = tokens.vocab_size if tokens is not None else None  # else the server checks
        if request.logit_bias and vocabulary is not None:
            beyond = [token for token, _ in request.logit_bias if token >= vocabulary]
            if beyond:
                raise InvalidInput(
                    f"logit_bias names token {beyond[0]}; the model's token ids run from 0 to {vocabulary - 1}",
                    hint="take token ids from the model's own tokenizer",
                    details={"param": "logit_bias"},
                )
        if tokens is not None:
            text = tokens.chat_prompt(request.messages) if request.kind == "chat" else request.prompt
            prompt_ids = tokens.encode(text, special=request.kind == "text")
            prompt_tokens = len(prompt_ids)
        checks = snapshot.checks.get(model.id)
        if checks is not None:
            rule = checks.input.first_match(request.text)
            classifier = self._classifier(checks)
            if rule is None and classifier is not None:
                rule = await classifier.flagged(request.text)
            if rule is not None:
                await self._blocked(caller, model, Stage.INPUT, rule, request.text, prompt_tokens or 0, 0)
                raise ContentBlocked(
                    "the request was refused by the model's safety policy",
                    hint="rephrase the request; repeated refusals are reviewed",
                    details={"code": "content_blocked"},
                )
        reserve = (prompt_tokens if prompt_tokens is not None else len(request.text) // 3 + 1) + max_new
        charges: list[tuple[Bucket, float]] = []
        quotas: list[Quota] = []
        month = month_of(self.clock.now())
        for kind, scope, limits in (
            (ScopeKind.KEY, caller.key_id, key_limits),
            (ScopeKind.ORGANISATION, caller.organisation, org_limits),
        ):
            if limits.requests_per_minute:
                charges.append((Bucket(f"rpm:{kind.value}:{scope}", limits.requests_per_minute), 1.0))
            if limits.tokens_per_minute:
                charges.append((Bucket(f"tpm:{kind.value}:{scope}", limits.tokens_per_minute), float(reserve)))
            if limits.monthly_tokens:
                quotas.append(
                    Quota(
                        f"quota:{kind.value}:{scope}:{month}",
                        limits.monthly_tokens,
                        self._month_seed(kind, scope, month),
                        f"the monthly token quota of {kind.value} {scope}",
                    )
                )
        refusal = await self.limiter.admit(charges, quotas, reserve) if charges or quotas else None
        if refusal is not None:
            spent = next((q for q in quotas if q.label == refusal.reason), None)
            if spent is not None:
                raise RateLimited(
                    f"{spent.label} ({spent.limit} tokens) is used up",
                    retry_after_s=refusal.retry_after_s,
                    code="insufficient_quota",
                )
            what, scope_kind, scope = refusal.reason.split(":", 2)
            unit = "requests" if what == "rpm" else "tokens"
            if refusal.retry_after_s == float("inf"):
                raise RateLimited(
                    f"this request needs {reserve} tokens, more than the {scope_kind} {scope} may use in a minute",
                    retry_after_s=60,
                )
            raise RateLimited(
                f"the {scope_kind} {scope} is over its limit of {unit} per minute", retry_after_s=refusal.retry_after_s
            )
        return Admitted(
            new_id(),
            caller,
            model,
            request,
            max_new,
            prompt_ids,
            prompt_tokens,
            charges,
            quotas,
            reserve,
            checks,
        )

    def _month_seed(self, kind: ScopeKind, scope: str, month: str) -> Any:
        def seed() -> int:
            self.meter.flush()
            with self.database.read() as connection:
                return store.month_tokens(connection, kind, scope, month)

        return seed

    async def _blocked(
        self,
        caller: GatewayCaller,
        model: ServedModel,
        stage: Stage,
        rule: str,
        text: str,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        now = self.clock.now()
        self.meter.record(
            UsageRecord(
                new_id(), now, caller.key_id, caller.organisation, model.id, prompt_tokens, completion_tokens, True
            )
        )
        block = Block(new_id(), now, caller.key_id, caller.organisation, model.id, stage, rule, excerpt(text))
        await asyncio.to_thread(self._record_block, block)
        log.info("gateway blocked a request", extra={"key": caller.key_id, "model": model.id, "rule": rule})

    async def generate(self, admitted: Admitted) -> AsyncGenerator[Event, None]:
        """The answer as events (text pieces, then the finish with token counts). The output checks
        run on the text so far before each piece is passed on; metering and settling the limits
        happen whatever way the generation ends (finished, blocked, failed, or the client gone)."""
        model = admitted.model
        checks = admitted.checks
        text = ""
        prompt_tokens = admitted.prompt_tokens or 0
        completion_tokens = 0
        counted = blocked = failed = False
        source = self._embedded(admitted) if model.backend.kind is BackendKind.EMBEDDED else self._remote(admitted)
        try:
            # Closed here whichever way this ends: the engine's row is freed, a remote backend's
            # connection released (its server stops generating), before metering and the refund.
            async with contextlib.aclosing(source):
                async for event in source:
                    candidate = text + event.text
                    if checks is not None and event.text:
                        rule = checks.output.first_match(candidate)
                        if rule is not None:
                            completion_tokens = event.completion_tokens or self._count(model, candidate)
                            counted = blocked = True
                            await self._blocked(
                                admitted.caller, model, Stage.OUTPUT, rule, candidate, prompt_tokens, completion_tokens
                            )
                            yield Event("", "content_filter", prompt_tokens, completion_tokens)
                            return
                    text = candidate
                    if event.done:
                        prompt_tokens = event.prompt_tokens or prompt_tokens
                        completion_tokens = event.completion_tokens
                        counted = True
                        if event.finish_reason == "error":
                            raise EngineFailed(
                                f"the model failed: {event.error}", hint="retry; report it if it persists"
                            )
                        yield replace(event, prompt_tokens=prompt_tokens)
                        return
                    yield event
        except ApertureError:
            failed = True  # the backend failed: what it never answered is not billed
            raise
        finally:
            if not counted:  # cut short: meter what was generated
                completion_tokens = self._count(model, text)
            if not blocked and not (failed and not text):  # a blocked answer was metered with its block
                self.meter.record(
                    UsageRecord(
                        admitted.id,
                        self.clock.now(),
                        admitted.caller.key_id,
                        admitted.caller.organisation,
                        model.id,
                        prompt_tokens,
                        completion_tokens,
                    )
                )
            used = 0 if failed and not text else prompt_tokens + completion_tokens
            refunds = [(bucket, cost - used) for bucket, cost in admitted.charges if bucket.key.startswith("tpm:")]
            if refunds or admitted.quotas:
                # Shielded: when the client left, this task is being cancelled, and the refund must
                # still reach a shared (Redis) bucket.
                await asyncio.shield(
                    self.limiter.settle(
                        [(b, amount) for b, amount in refunds if amount > 0], admitted.quotas, used - admitted.reserved
                    )
                )

    def _count(self, model: ServedModel, text: str) -> int:
        tokens = self._engines[model.id].tokens if model.id in self._engines else self._tokens.get(model.id)
        return tokens.count(text) if tokens is not None else 0

    async def _embedded(self, admitted: Admitted) -> AsyncGenerator[Event, None]:
        engine = await self._loaded_engine(admitted.model)
        assert admitted.prompt_ids is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()
        request = admitted.request

        def emit(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        generation = Generation(
            admitted.prompt_ids,
            Sampling(
                admitted.max_new_tokens,
                request.temperature,
                request.top_p,
                request.seed,
                request.stop,
                request.presence_penalty,
                request.frequency_penalty,
                request.logit_bias,
            ),
            emit,
        )
        engine.submit(generation)
        try:
            while True:
                event = await queue.get()
                yield event
                if event.done:
                    return
        finally:
            generation.cancel()  # the client left or the output was blocked: free the slot

    async def _remote(self, admitted: Admitted) -> AsyncGenerator[Event, None]:
        model = admitted.model
        backend = model.backend
        assert backend.url is not None and backend.remote_model is not None
        remote = RemoteBackend(self.clients, backend.url, backend.remote_model, backend.timeout_s, backend.api_key)
        request = admitted.request
        body = {**request.forward, "max_tokens": admitted.max_new_tokens}
        path = "/chat/completions" if request.kind == "chat" else "/completions"
        tokens = self._tokens.get(model.id)

        def piece(choice: dict[str, Any]) -> str:
            if request.kind == "chat":
                holder = choice.get("delta") or choice.get("message") or {}
                return str(holder.get("content") or "")
            return str(choice.get("text") or "")

        if not request.stream:
            data = await remote.complete(path, body)
            choice = (data.get("choices") or [{}])[0]
            text = piece(choice)
            reported = data.get("usage") or {}
            yield Event(
                text,
                str(choice.get("finish_reason") or "stop"),
                admitted.prompt_tokens or int(reported.get("prompt_tokens") or 0),
                tokens.count(text) if tokens is not None else int(reported.get("completion_tokens") or 0),
            )
            return
        body["stream_options"] = {"include_usage": True}
        text = ""
        finish = "stop"
        usage: dict[str, Any] = {}
        async with contextlib.aclosing(remote.stream(path, body)) as chunks:  # released as soon as this ends
            async for chunk in chunks:
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    delta = piece(choice)
                    if delta:
                        text += delta
                        yield Event(delta)
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
        yield Event(
            "",
            finish,
            admitted.prompt_tokens or int(usage.get("prompt_tokens") or 0),
            tokens.count(text) if tokens is not None else int(usage.get("completion_tokens") or 0),
        )

    # --- backend health -----------------------------------------------------------------------

    async def check_backends(self) -> list[dict[str, Any]]:
        """Ask every remote backend for its models; remember the answer (listed in /api/v1/gateway/backends)."""
        results = []
        for backend in self.backends():
            if backend.kind is BackendKind.EMBEDDED:
                healthy, detail = True, "loaded" if backend.model in self._engines else "loads on first request"
            else:
                assert backend.url is not None
                remote = RemoteBackend(
                    self.clients, backend.url, backend.remote_model or "", backend.timeout_s, backend.api_key
                )
                healthy, detail = await remote.health()
            self.health[backend.model] = (healthy, detail, self.clock.now())
            results.append({"model": backend.model, "kind": backend.kind.value, "healthy": healthy, "detail": detail})
        return results

    async def health_loop(self) -> None:
        while self.config.health_interval_s > 0:
            try:
                await self.check_backends()
            except Exception:
                log.exception("backend health check failed")
            await asyncio.sleep(self.config.health_interval_s)
