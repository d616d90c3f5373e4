"""Sharding across Ray workers: a local Ray head started by the test; same scores as in process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from aperture.registry.domain import ModelVersion
from aperture.risk.scaleout import RayChunkRunner
from aperture.risk.service import RunOptions
from aperture.testing.server import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[str]:
    ray = str(Path(sys.executable).parent / "ray")
    port = free_port("127.0.0.1")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    temp = Path("/tmp") / f"ray-{port}"  # Ray's socket paths must stay short
    started = subprocess.run(
        [
            ray,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
            "--node-ip-address=127.0.0.1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        import ray as ray_module

        ray_module.shutdown()
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_sharded_run_matches_the_in_process_run(services: Services, tiny_version: ModelVersion, ray_head: str) -> None:
    options = RunOptions(limit=24, chunk_items=6)
    local = services.risk.run_suite(SYSTEM, tiny_version.reference, "wmdp-bio", options)
    services.risk.chunk_runner = RayChunkRunner(ray_head, 2, batch_tokens=512, threads=1, data_root=None)
    sharded = services.risk.run_suite(SYSTEM, tiny_version.reference, "wmdp-bio", options)
    assert sharded.status == "completed" and sharded.items == 24
    mine = {r["key"]: r for r in services.risk.run_details(SYSTEM, local.run_id)["results"]}
    theirs = {r["key"]: r for r in services.risk.run_details(SYSTEM, sharded.run_id)["results"]}
    assert mine.keys() == theirs.keys()
    for key, result in mine.items():
        assert result["correct"] == theirs[key]["correct"]
        assert result["detail"]["loglikelihoods"] == pytest.approx(theirs[key]["detail"]["loglikelihoods"], abs=1e-4)
    assert local.evidence and sharded.evidence
    assert local.evidence.headline == sharded.evidence.headline
