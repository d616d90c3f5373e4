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
    def resolved_model_cache(self) -> Path:
        return self.model_cache or (self.home / "cache" / "models")

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
