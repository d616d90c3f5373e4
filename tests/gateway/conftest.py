"""The gateway's test world: an instance with a tiny random Llama (SmolLM2's tokenizer and chat
template) registered, released as hosted and bound to the embedded engine, an organisation with
a key, and the real app served by uvicorn on a free loopback port."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aperture.access.domain import SYSTEM, Organisation, OrganisationKind, RuleOfLaw, SecurityLevel, State, StateKind
from aperture.bootstrap import Services
from aperture.gateway.domain import BackendKind
from aperture.release.domain import Tier
from aperture.testing.release import put_tier
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.conftest import Instance, write_tiny_llama

TINY = "tiny-llama:1.0.0"


@pytest.fixture(scope="session")
def tiny_model_dir(bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template."""
    return write_tiny_llama(bundled_model_dir, tmp_path_factory.mktemp("tiny-model"), max_position_embeddings=512)


def register(services: Services, source: Path, tmp_path: Path, name: str, version: str = "1.0.0") -> str:
    copy = tmp_path / f"source-{name}-{version}"
    shutil.copytree(source, copy)
    services.registry.register(SYSTEM, copy, name, version, licence="Apache-2.0")
    return f"{name}:{version}"


def add_organisation(services: Services, name: str) -> None:
    if not any(s.code == "FR" for s in services.access.list_states()):
        services.access.save_state(
            SYSTEM, State("FR", "France", StateKind.MEMBER, True, SecurityLevel.SL4, RuleOfLaw.ADEQUATE)
        )
    services.access.save_organisation(SYSTEM, Organisation(name, name.title(), OrganisationKind.COMPANY, "FR"))


@dataclass
class World:
    services: Services
    key: str
    key_id: str
    model: str


@pytest.fixture
def world(services: Services, tiny_model_dir: Path, tmp_path: Path) -> World:
    model = register(services, tiny_model_dir, tmp_path, "tiny-llama")
    put_tier(services, "tiny-llama", "1.0.0", Tier.HOSTED)
    services.gateway.bind(SYSTEM, model, BackendKind.EMBEDDED)
    add_organisation(services, "acme")
    issued = services.gateway.issue_key(SYSTEM, organisation="acme", name="tests")
    return World(services, issued.text, issued.key.key_id, model)


@pytest.fixture
def served(world: World) -> Iterator[str]:
    """The base URL of the whole app (pages, /api/v1 and /v1) on a real uvicorn."""
    with running_server(create_app(world.services)) as url:
        yield url


@pytest.fixture
def instance_admin(instance: Instance) -> str:
    """The instance's administrator API key (for the operators' routes under /api/v1/gateway)."""
    return instance.admin_key


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged_errors(served: str) -> Iterator[list[logging.LogRecord]]:
    """Records logged at ERROR or above while the test runs, by our code, asyncio (a task whose
    exception nobody retrieved) or uvicorn (whose logger does not propagate to the root)."""
    handler = _Collect()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
