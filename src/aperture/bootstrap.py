"""The composition root: everything is built here from one Settings object."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property

from aperture.access.domain import SYSTEM, Role
from aperture.access.policy import PolicyEngine, policy_texts_from
from aperture.access.service import AccessService, AccessSettings, IssuedKey
from aperture.audit.service import AuditLog
from aperture.audit.views import LogViews
from aperture.core import db
from aperture.core.clock import Clock, SystemClock
from aperture.core.errors import Conflict, InvalidInput, NotFound, NotInitialised
from aperture.gateway.limits import Limiter, LocalLimiter, RedisLimiter
from aperture.gateway.service import GatewayConfig, GatewayService
from aperture.licensing.service import LicensingService, LicensingSettings, load_checklist
from aperture.raid.config import RaidConfig, SmtpConfig
from aperture.raid.disclosure import EmbargoPolicy, SharingPolicy
from aperture.raid.service import RaidService
from aperture.registry.service import RegistryService, version_asset
from aperture.release.reports import ReportPrinter
from aperture.release.service import ReleaseService, board_rules
from aperture.risk.datasets import DataDirectory
from aperture.risk.providers import judge_provider, transformers_engine_provider
from aperture.risk.service import ChunkRunner, RiskService
from aperture.security.service import SecurityService, security_settings
from aperture.settings import Settings, apply_process_environment
from aperture.vault.artifacts import ArtifactStore
from aperture.vault.keys import InstanceKeys, generate_instance_keys, load_instance_keys
from aperture.vault.service import VaultService

MARKER = "instance.json"


@dataclass
class Services:
    settings: Settings
    database: db.Database
    clock: Clock
    audit: AuditLog
    access: AccessService
    vault: VaultService
    registry: RegistryService
    risk: RiskService
    security: SecurityService
    release: ReleaseService
    gateway: GatewayService
    licensing: LicensingService
    raid: RaidService
    audit_views: LogViews  # the log's public and private views, per caller
    _keys: InstanceKeys | None = field(default=None, repr=False)

    @cached_property
    def keys(self) -> InstanceKeys:
        return self._keys or load_instance_keys(self.settings.keys_dir)

    def close(self) -> None:
        self.gateway.close()
        self.audit.close()
        self.database.dispose()


def build_services(settings: Settings, *, clock: Clock | None = None) -> Services:
    apply_process_environment(settings)
    clock = clock or SystemClock()
    database = db.Database.from_url(settings.resolved_database_url)
    # The log signs tree heads with the instance key, loaded on first use (after `init` made it).
    audit = AuditLog(clock, database, signer=lambda: services.keys)
    engine = PolicyEngine(policy_texts_from(settings.policy_dir)) if settings.policy_dir else PolicyEngine.shipped()
    access_settings = AccessSettings(
        refresh_s=settings.authz_refresh_s,
        login_max_failures=settings.login_max_failures,
        login_lockout=timedelta(seconds=settings.login_lockout_s),
        session_ttl=timedelta(seconds=settings.session_ttl_s),
    )
    access = AccessService(database, audit, clock, engine=engine, config=access_settings)
    artifacts = ArtifactStore(settings.artifacts_dir, workers=settings.resolved_hash_workers)
    vault = VaultService(database, artifacts, settings.keys_dir, settings.sealed_dir)
    registry = RegistryService(database, audit, clock, vault, access, model_cache=settings.resolved_model_cache)
    security = SecurityService(database, audit, clock, access, vault, registry, security_settings(settings))
    access.observe(security.watch)
    data = DataDirectory(settings.data_dir)
    engines = transformers_engine_provider(settings.eval_batch_tokens, settings.eval_threads)
    chunk_runner: ChunkRunner | None = None
    if settings.ray_address:
        from aperture.risk.scaleout import RayChunkRunner

        chunk_runner = RayChunkRunner(
            settings.ray_address,
            settings.ray_workers,
            batch_tokens=settings.eval_batch_tokens,
            threads=settings.eval_threads,
            data_root=settings.data_dir,
        )
    risk = RiskService(
        database,
        audit,
        clock,
        registry,
        vault,
        data,
        settings.eval_work_dir,
        engines,
        judge_provider(data, engines),
        chunk_runner,
    )
    printer = ReportPrinter(settings.home / "reports" / "pdf", settings.release_report_printers)
    release = ReleaseService(database, audit, clock, registry, risk, access, board_rules(settings), printer=printer)
    licensing = LicensingService(
        database,
        audit,
        clock,
        access,
        registry,
        vault,
        release,
        LicensingSettings(
            checklist=load_checklist(settings.licensing_checklist),
            alpha=settings.licensing_alpha,
            null_keys=settings.licensing_null_keys,
            token_ttl=timedelta(seconds=settings.download_token_ttl_s),
        ),
    )
    services = Services(
        settings=settings,
        database=database,
        clock=clock,
        audit=audit,
        access=access,
        vault=vault,
        registry=registry,
        risk=risk,
        security=security,
        release=release,
        gateway=GatewayService(
            database,
            audit,
            clock,
            access,
            registry,
            release,
            vault,
            _limiter(settings),
            work_dir=settings.gateway_dir,
            config=gateway_config(settings),
            licensees=licensing.licensees_in_force,
        ),
        licensing=licensing,
        raid=RaidService(
            database=database, audit=audit, clock=clock, access=access, registry=registry, config=raid_config(settings)
        ),
        audit_views=LogViews(audit, access, _version_asset_of(registry)),
    )
    return services


def _version_asset_of(registry: RegistryService) -> Callable[[str], str | None]:
    """The asset a `model:NAME:VERSION` resource of the log names (for the private view's
    clearance check on events that did not store it)."""

    def resolve(resource: str) -> str | None:
        if not resource.startswith("model:"):
            return None
        try:
            return version_asset(registry.find_version(resource.removeprefix("model:")).id).uid
        except (NotFound, InvalidInput):
            return None

    return resolve


def _limiter(settings: Settings) -> Limiter:
    """Shared through Redis when configured, so every gateway replica sees the same buckets."""
    if settings.redis_url:
        return RedisLimiter(settings.redis_url, prefix=f"{settings.redis_prefix}gw:")
    return LocalLimiter()


def gateway_config(settings: Settings) -> GatewayConfig:
    return GatewayConfig(
        cache_s=settings.gateway_cache_s,
        refresh_wait_s=settings.gateway_refresh_wait_s,
        max_body_bytes=settings.gateway_max_body_bytes,
        max_tokens=settings.gateway_max_tokens,
        default_max_tokens=settings.gateway_default_max_tokens,
        batch_size=settings.gateway_batch_size,
        threads=settings.gateway_threads,
        meter_interval_s=settings.gateway_meter_interval_s,
        alert_blocks=settings.gateway_alert_blocks,
        alert_window_s=settings.gateway_alert_window_s,
        health_interval_s=settings.gateway_health_interval_s,
    )


def raid_config(settings: Settings) -> RaidConfig:
    smtp = None
    if settings.smtp_host:
        smtp = SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout_s=settings.smtp_timeout_s,
        )
    return RaidConfig(
        files_dir=settings.home / "raid" / "attachments",
        max_attachment_bytes=settings.raid_max_attachment_bytes,
        max_attachments=settings.raid_max_attachments,
        embargo_policy=EmbargoPolicy(settings.raid_embargo_policy),
        embargo_days=settings.raid_embargo_days,
        sharing_policy=SharingPolicy(settings.raid_sharing_policy),
        reminder_hours=settings.raid_reminder_hours,
        publisher_name=settings.raid_publisher_name,
        publisher_namespace=settings.raid_publisher_namespace,
        max_batch=settings.raid_max_batch,
        stix_max_bytes=settings.raid_stix_max_bytes,
        outbox_max_attempts=settings.raid_outbox_max_attempts,
        outbox_backoff_s=settings.raid_outbox_backoff_s,
        outbox_lease_s=settings.raid_outbox_lease_s,
        smtp=smtp,
    )


def is_initialised(settings: Settings) -> bool:
    return (settings.home / MARKER).exists()


def require_initialised(services: Services) -> None:
    if not is_initialised(services.settings):
        raise NotInitialised(
            f"no Aperture instance at {services.settings.home}",
            hint="run `aperture init` (or set APERTURE_HOME to an existing instance)",
        )
    current, head = db.current_revision(services.database), db.head_revision()
    if current != head:
        raise NotInitialised(
            f"the database schema is at {current}, this release needs {head}",
            hint="run `aperture migrate` to upgrade the schema",
        )


def init_instance(services: Services) -> IssuedKey:
    """Create an instance: schema, signing keys, first administrator key. Never destructive."""
    settings = services.settings
    if is_initialised(settings):
        raise Conflict(
            f"an Aperture instance already exists at {settings.home}",
            hint="use it as it is, or choose another APERTURE_HOME; init never overwrites an instance",
        )
    settings.home.mkdir(parents=True, exist_ok=True)
    if db.current_revision(services.database) is not None:
        raise Conflict(
            "the database already holds an Aperture schema",
            hint="point APERTURE_DATABASE_URL at an empty database, or use the instance that owns it",
        )
    keys = generate_instance_keys(settings.keys_dir)
    db.upgrade(services.database)
    services._keys = keys
    issued = services.access.issue_key(
        SYSTEM, name="first administrator", principal="admin", roles=(Role.ADMINISTRATOR,)
    )
    services.release.adopt_policy(SYSTEM, services.release.shipped_policy_text(), "the shipped default policy")
    with services.database.transaction() as connection:
        services.audit.append(
            connection,
            actor=SYSTEM.actor,
            action="instance.initialised",
            resource="instance",
            details={"signing_key_id": keys.key_id, "artifact_key_id": keys.artifact_key_id},
        )
    marker = {"schema_version": 1, "signing_key_id": keys.key_id, "artifact_key_id": keys.artifact_key_id}
    (settings.home / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    return issued
