"""What the backup tests share: an instance with something in it, and the CLI on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from tests.conftest import cli_runner
from tests.registry.builders import write_hf_directory


@pytest.fixture
def filled(services: Services, tmp_path: Path) -> Services:
    """An instance with a registered model version, some log events and a signed head."""
    services.registry.register(SYSTEM, write_hf_directory(tmp_path / "hf", sharded=True), "m", "1")
    services.registry.verify_version("m", "1")
    attachments = services.settings.home / "raid" / "attachments"
    attachments.mkdir(parents=True, exist_ok=True)
    (attachments / "note.txt").write_text("an attachment\n")
    services.audit.issue_tree_head()
    return services


@pytest.fixture
def run(filled: Services) -> Iterator[object]:
    yield from cli_runner(filled.settings)
