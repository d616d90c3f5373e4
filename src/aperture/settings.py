"""The one Settings object. Nothing else in the package reads the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of an Aperture instance, read from `APERTURE_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="APERTURE_", extra="ignore")

    home: Path = Field(default=Path(".aperture"), description="Instance directory: database, keys, artifacts.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default is SQLite at HOME/aperture.db.")
    host: str = Field(default="127.0.0.1", description="Address `aperture serve` binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `aperture serve` binds.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    log_format: Literal["console", "json"] = Field(default="console", description="Log line format.")
    tree_head_interval_s: int = Field(
        default=300, ge=0, description="Seconds between signed tree heads issued by the server; 0 disables."
    )
    hash_workers: int = Field(
        default=0, ge=0, description="Threads used to hash and store artifacts; 0 means one per CPU core."
    )
    model_cache: Path | None = Field(
        default=None, description="Cache of converted bundled models; default is HOME/cache/models."
    )
    data_dir: Path | None = Field(
        default=None,
        description="Evaluation data directory (same layout as the bundled one); default is the bundled public sets.",
    )
    eval_batch_tokens: int = Field(
        default=2048, ge=64, description="Token budget of one evaluation batch (rows x longest row)."
    )
    eval_threads: int = Field(default=0, ge=0, description="CPU threads for evaluation; 0 lets torch decide.")
    ray_address: str | None = Field(
        default=None, description="Ray cluster address (e.g. ray://head:10001 or auto); when set, suites are sharded."
    )
    ray_workers: int = Field(default=2, ge=1, description="Ray workers (each holds one copy of the model).")
    hf_offline: bool = Field(default=True, description="Keep transformers off the network (no model hub).")
    policy_dir: Path | None = Field(
        default=None, description="Directory of Cedar policy files to use instead of the shipped ones."
    )
    authz_refresh_s: float = Field(
        default=1.0, ge=0, description="Seconds a process trusts its Cedar entity store before checking for changes."
    )
    session_ttl_s: int = Field(default=8 * 3600, ge=60, description="Seconds a UI sign-in lasts.")
    cookie_secure: bool = Field(default=False, description="Mark the session cookie Secure (set it behind HTTPS).")
    login_max_failures: int = Field(default=5, ge=1, description="Failed sign-ins in a row before an account locks.")
    login_lockout_s: int = Field(default=900, ge=1, description="Seconds a locked account stays locked.")
    grant_max_hours: int = Field(default=72, ge=1, description="The longest a weight-access grant may last.")
    download_token_ttl_s: int = Field(default=300, ge=10, description="Seconds a single-use download token is valid.")
    anomaly_factor: float = Field(
        default=3.0, gt=1, description="Downloads in a day above this multiple of a person's baseline raise an alert."
    )
    anomaly_min_downloads: int = Field(
        default=5, ge=1, description="Downloads in a day a person may always make before the baseline rule applies."
    )

    release_quorum: int = Field(default=2, ge=1, description="Board approvals a reversible release decision needs.")
    release_open_quorum: int = Field(
        default=3, ge=1, description="Board approvals opening weights needs (irreversible: higher than the quorum)."
    )
    release_cooling_off_days: float = Field(
        default=14,
        ge=0,
        description="Days an approved opening of weights waits, open to challenge, before it is carried out.",
    )
    release_stage_grace_days: float = Field(
        default=30, ge=0, description="Days after a release stage's date before it is shown as overdue and blocked."
    )
    release_report_printers: int = Field(
        default=2,
        ge=1,
        le=16,
        description="PDF release reports printed at once (each a headless Chromium); further requests get 503.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://host:6379/0) where gateway replicas share rate limits and quotas; "
        "unset keeps them in process.",
    )
    redis_prefix: str = Field(default="aperture:", description="Prefix of every Redis key this instance writes.")
    api_max_body_bytes: int = Field(
        default=96 * 1024 * 1024,
        ge=64 * 1024,
        description="Largest request body the API and pages read (larger: 413); the gateway has its own.",
    )
    gateway_max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body the gateway reads (larger: 413)."
    )
    gateway_max_tokens: int = Field(
        default=2048, ge=1, description="Most new tokens one gateway request may ask for (limits may lower it)."
    )
    gateway_default_max_tokens: int = Field(
        default=256, ge=1, description="New tokens a gateway request gets when it does not say."
    )
    gateway_batch_size: int = Field(
        default=32, ge=1, description="Requests the embedded engine generates together (its batch rows)."
    )
    gateway_threads: int = Field(
        default=0, ge=0, description="CPU threads of the embedded engine; 0 lets torch decide."
    )
    gateway_cache_s: float = Field(
        default=1.0,
        ge=0,
        description="Seconds a gateway replica trusts its cached keys, bindings, grants, limits, prices and policies; "
        "a request never admits on state read longer ago.",
    )
    gateway_refresh_wait_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Seconds a gateway request waits for its state to be read again when it is older than "
        "gateway_cache_s; past that, or when the database cannot be read, it fails closed with 503.",
    )
    gateway_meter_interval_s: float = Field(
        default=1.0, gt=0, description="Seconds between batches of metered usage written to the database."
    )
    gateway_alert_blocks: int = Field(
        default=3, ge=1, description="Blocked requests from one key within the alert window that raise an alert."
    )
    gateway_alert_window_s: int = Field(default=600, ge=1, description="The alert window, in seconds.")
    gateway_health_interval_s: int = Field(
        default=30, ge=0, description="Seconds between health checks of remote backends; 0 disables."
    )
    licensing_checklist: Path | None = Field(
        default=None, description="JSON file of licence screening questions; default is the shipped checklist."
    )
    licensing_alpha: float = Field(
        default=2e-3, gt=0, le=0.05, description="Strength of the traceable mark in licensed copies (times row std)."
    )
    licensing_null_keys: int = Field(
        default=200, ge=0, le=100_000, description="Never-issued keys scored for a trace report's empirical null."
    )

    raid_max_attachment_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, le=1024**3, description="Largest attachment a RAID report may carry."
    )
    raid_max_attachments: int = Field(default=5, ge=0, le=50, description="Most attachments one RAID report carries.")
    raid_embargo_policy: Literal["cert-cc", "project-zero", "project-zero-itw", "days", "none"] = Field(
        default="cert-cc",
        description="Default embargo of a RAID advisory: CERT/CC 45 days, Project Zero 90+30, in-the-wild 7+30, "
        "a fixed number of days, or none (publication only by a recorded decision).",
    )
    raid_embargo_days: int = Field(
        default=45, ge=1, le=3650, description="Days of embargo when APERTURE_RAID_EMBARGO_POLICY is `days`."
    )
    raid_sharing_policy: Literal["consent", "legal-minimum"] = Field(
        default="consent",
        description="What RAID shares with regulators beyond what the law requires: as each reporter consented, "
        "or never.",
    )
    raid_reminder_hours: int = Field(
        default=24, ge=1, le=24 * 30, description="Hours before a reporter's own deadline that RAID reminds them."
    )
    raid_publisher_name: str = Field(
        default="Aperture RAID desk", description="Publisher of RAID advisories (CSAF) and STIX exports."
    )
    raid_publisher_namespace: str = Field(
        default="https://raid.aperture.invalid", description="The publisher's URL in CSAF advisories."
    )
    raid_max_batch: int = Field(
        default=5000, ge=1, le=100_000, description="Most alerts one automatic RAID intake takes in one transaction."
    )
    raid_stix_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest STIX bundle a partner may import."
    )
    raid_outbox_max_attempts: int = Field(
        default=8, ge=1, le=100, description="SMTP attempts before an outbox message is given up (and audited)."
    )
    raid_outbox_backoff_s: float = Field(
        default=30.0, gt=0, description="First retry delay of an outbox message; it doubles with each attempt."
    )
    raid_outbox_lease_s: float = Field(
        default=300.0, gt=0, description="Seconds a sender holds the messages it claimed before another may take them."
    )
    smtp_host: str | None = Field(
        default=None, description="SMTP server that delivers RAID's outbox; unset keeps messages waiting."
    )
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP server port.")
    smtp_from: str = Field(default="raid@localhost", description="Sender address of RAID's messages.")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str | None = Field(default=None, description="SMTP login name, if the server needs one.")
    smtp_password: str | None = Field(default=None, description="SMTP password, if the server needs one.")
    smtp_timeout_s: float = Field(default=30.0, gt=0, description="Seconds an SMTP connection or command may take.")

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'aperture.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def sealed_dir(self) -> Path:
        return self.home / "sealed"

    @property
    def resolved_model_cache(self) -> Path:
        return self.model_cache or (self.home / "cache" / "models")

    @property
    def gateway_dir(self) -> Path:
        """The gateway's write-ahead usage logs and model directories."""
        return self.home / "gateway"

    @property
    def eval_work_dir(self) -> Path:
        return self.home / "cache" / "eval"

    @property
    def resolved_hash_workers(self) -> int:
        return self.hash_workers or (os.cpu_count() or 1)


def load_settings(**overrides: object) -> Settings:
    """Read settings once at an entry point; overrides win over the environment."""
    return Settings(**overrides)  # type: ignore[arg-type]


def apply_process_environment(settings: Settings) -> None:
    """Set the variables third-party libraries read themselves (the hub must stay offline)."""
    if settings.hf_offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
