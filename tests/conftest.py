"""Shared fixtures: a real instance on SQLite, or on PostgreSQL when APERTURE_TEST_DATABASE_URL is set.

Each test that asks for `services` gets a fresh instance: its own home directory and, on
PostgreSQL, its own schema (dropped afterwards), so tests never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from aperture.bootstrap import Services, build_services, init_instance
from aperture.cli_support import CliState
from aperture.core.db import normalise_url
from aperture.settings import Settings

TEST_DATABASE_URL = os.environ.get("APERTURE_TEST_DATABASE_URL")


def pytest_report_header(config: pytest.Config) -> str:
    return f"aperture database: {'PostgreSQL ' + TEST_DATABASE_URL if TEST_DATABASE_URL else 'SQLite'}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="run only the tests whose instance takes APERTURE_TEST_DATABASE_URL (the `database_url` "
        "fixture, or the `database` mark): the rest run on SQLite whatever the URL, so a second run "
        "against PostgreSQL would repeat them unchanged",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--database-tests-only"):
        return
    if not TEST_DATABASE_URL:
        raise pytest.UsageError("--database-tests-only needs APERTURE_TEST_DATABASE_URL")
    kept, repeated = [], []
    for item in items:
        uses = "database_url" in getattr(item, "fixturenames", ()) or item.get_closest_marker("database")
        (kept if uses else repeated).append(item)
    if repeated:
        config.hook.pytest_deselected(items=repeated)
        items[:] = kept


@pytest.fixture(scope="session")
def bundled_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion of the bundled model per run: the cache is keyed by the GGUF's digest, as in production."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def bundled_model_dir(bundled_model_cache: Path) -> Path:
    from aperture.ml import bundled

    return bundled.convert_to_safetensors(bundled.find_bundled_gguf(), bundled_model_cache)


def write_tiny_llama(tokenizer_dir: Path, target: Path, *, max_position_embeddings: int) -> Path:
    """A 2-layer random Llama with the tokenizer and chat template of `tokenizer_dir` (seeded: the
    same weights every run), fast enough for engine and service tests."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(1234)
    LlamaForCausalLM(config).save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str | None]:
    """None means the default SQLite file inside the instance home."""
    if not TEST_DATABASE_URL:
        yield None
        return
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(normalise_url(TEST_DATABASE_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in TEST_DATABASE_URL else "?"
    try:
        yield f"{TEST_DATABASE_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None) -> Settings:
    return Settings(home=tmp_path / "home", database_url=database_url, hash_workers=2)


@dataclass
class Instance:
    services: Services
    admin_key: str


@pytest.fixture
def instance(settings: Settings) -> Iterator[Instance]:
    services = build_services(settings)
    issued = init_instance(services)
    try:
        yield Instance(services, issued.text)
    finally:
        services.close()


@pytest.fixture
def services(instance: Instance) -> Services:
    return instance.services


Run = Callable[..., Result]


def cli_runner(settings: Settings) -> Iterator[Run]:
    """For a fixture: run `aperture ARGS...` through the real Typer app on `settings`, each call
    with its own CLI state (services built on first use); the services are closed afterwards."""
    from aperture.cli import app

    states: list[CliState] = []

    def invoke(*args: str) -> Result:
        state = CliState(settings=settings)
        states.append(state)
        return CliRunner().invoke(app, list(args), obj=state)

    yield invoke
    for state in states:
        if state._services is not None:
            state._services.close()
