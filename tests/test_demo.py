"""`aperture demo`, the README's first command, end to end: the real bundled model, served."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aperture.testing.server import free_port

pytestmark = pytest.mark.slow

APERTURE = str(Path(sys.executable).parent / "aperture")


def test_demo_imports_verifies_and_serves_the_bundled_model(tmp_path: Path, bundled_model_cache: Path) -> None:
    home = tmp_path / "demo"
    port = free_port()
    env = {**os.environ, "APERTURE_MODEL_CACHE": str(bundled_model_cache), "COLUMNS": "200"}
    env.pop("APERTURE_HOME", None)
    env.pop("APERTURE_DATABASE_URL", None)
    process = subprocess.Popen(
        [APERTURE, "demo", "--home", str(home), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        info = _wait_until_served(process, home / "demo.json", timeout_s=480)
        base = info["base_url"]
        assert base == f"http://127.0.0.1:{port}"
        assert [m["ref"] for m in info["models"]] == ["smollm2-135m-instruct:0.1.2"]
        for name, url in info["urls"].items():
            response = httpx.get(url, timeout=30, follow_redirects=True)  # /release sends the public to /login
            assert response.status_code == 200, (name, url, response.text[:300])
        admin = {"Authorization": f"Bearer {info['admin_key']}"}
        assert httpx.get(f"{base}/api/v1/whoami", headers=admin).json()["roles"] == ["administrator"]
        ref = info["models"][0]
        version = httpx.get(f"{base}/api/v1/models/{ref['name']}/versions/{ref['version']}", headers=admin).json()
        assert version["parameter_count"] == 134_515_008
        # The release step: a decision with its dissent, public without a key, with its report.
        entry = next(e for e in httpx.get(f"{base}/api/v1/registry").json() if e["model"] == ref["ref"])
        assert entry["tier"] == "hosted" and entry["decision"]["status"] == "effective"
        assert entry["decision"]["policy_allows"] == "open"
        assert entry["decision"]["dissent"] and entry["decision"]["signature"]
        page = httpx.get(info["urls"]["release"]).text
        assert "Dissent" in page and "Release plan" in page and "six months hosted" in page
        report = httpx.get(f"{base}/api/v1/registry/{ref['name']}/{ref['version']}/report.md").text
        assert "## 7.2 Reasons for proceeding" in report and "EU Model Documentation Form" in report
        events = httpx.get(f"{base}/api/v1/audit/events", params={"limit": 500}).json()["events"]
        assert {"registry.version.registered", "registry.version.verified"} <= {e["action"] for e in events}
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert "verified 6 files" in output, output
    assert "admin key" in output

    # A second run starts afresh in the same demo home and keeps the converted model.
    again = subprocess.run(
        [APERTURE, "demo", "--home", str(home), "--no-serve"], capture_output=True, text=True, env=env, timeout=240
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((home / "demo.json").read_text())["admin_key"] != info["admin_key"]


def test_demo_refuses_a_directory_that_is_not_a_demo_instance(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    done = subprocess.run([APERTURE, "demo", "--home", str(precious), "--no-serve"], capture_output=True, text=True)
    assert done.returncode == 4
    assert "is not a demo instance" in done.stderr
    assert (precious / "notes.txt").read_text() == "keep me"


def _wait_until_served(process: subprocess.Popen[str], demo_json: Path, timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the demo exited with {process.returncode}: {process.stdout.read() if process.stdout else ''}"
            )
        if demo_json.exists():
            info = json.loads(demo_json.read_text())
            try:
                if httpx.get(f"{info['base_url']}/healthz", timeout=2).status_code == 200:
                    return info
            except httpx.TransportError:
                pass
        time.sleep(0.3)
    raise AssertionError("the demo did not serve in time")
