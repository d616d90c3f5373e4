"""The demo's gateway examples work as printed: the `curl` line and the `openai` client line, run
as shell commands against the real app (here on the tiny model; the demo uses the bundled one)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from aperture.testing.server import free_port, running_server
from aperture.web.app import create_app
from aperture.web.cli import demo_gateway
from tests.gateway.conftest import add_organisation, register


@pytest.fixture
def demo(services: Services, tiny_model_dir: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    ref = register(services, tiny_model_dir, tmp_path, "tiny-demo")
    add_organisation(services, "tu-berlin")
    port = free_port()
    version = services.registry.find_version(ref, SYSTEM)
    examples = demo_gateway(services, version, f"http://127.0.0.1:{port}", organisation="tu-berlin")
    with running_server(create_app(services), port=port) as base:
        yield base, examples


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_printed_curl_and_openai_examples_answer(demo: tuple[str, dict[str, str]], services: Services) -> None:
    _, examples = demo
    curl = subprocess.run(examples["curl"], shell=True, capture_output=True, text=True, timeout=120)
    assert curl.returncode == 0, curl.stderr
    answer = json.loads(curl.stdout)
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] > 0
    client = subprocess.run(examples["openai"], shell=True, capture_output=True, text=True, timeout=120)
    assert client.returncode == 0, client.stderr
    assert services.gateway.usage(SYSTEM)[0].requests == 2
    assert services.release.tier_of("tiny-demo", "1.0.0") is not None
