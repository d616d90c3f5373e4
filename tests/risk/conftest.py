"""Models for the risk tests: the bundled model converted once per run, and a tiny random model
with the same tokenizer (fast enough for every engine and service test)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from aperture.registry.domain import ModelVersion
from tests.conftest import write_tiny_llama

TINY_NAME = "tiny-llama"
TINY_VERSION = "1.0.0"


@pytest.fixture(scope="session")
def tiny_model_dir(bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template."""
    return write_tiny_llama(bundled_model_dir, tmp_path_factory.mktemp("tiny-model"), max_position_embeddings=2048)


def register_tiny(services: Services, source: Path, tmp_path: Path) -> ModelVersion:
    copy = tmp_path / "tiny-source"
    shutil.copytree(source, copy)
    return services.registry.register(SYSTEM, copy, TINY_NAME, TINY_VERSION, licence="Apache-2.0").version


@pytest.fixture
def tiny_version(services: Services, tiny_model_dir: Path, tmp_path: Path) -> ModelVersion:
    return register_tiny(services, tiny_model_dir, tmp_path)
