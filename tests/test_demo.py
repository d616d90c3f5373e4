"""`aperture demo`, the README's first command, end to end: the real bundled model, served."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from aperture.testing.server import free_port

pytestmark = pytest.mark.slow

APERTURE = str(Path(sys.executable).parent / "aperture")
# The demo prints a line per step (at most ~40 s apart on an idle machine): a test waits on that
# progress, never on the clock, and fails only when the demo stops printing for this long.
STALL_S = 300.0
T = TypeVar("T")


class Watched:
    """A running demo whose output is read as it comes: the lines so far, and when the last came."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd
        )
        self.lines: list[str] = []
        self.last_progress = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            self.last_progress = time.monotonic()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, ready: Callable[[], T | None], what: str) -> T:
        """Poll `ready` until it returns a value; fail when the demo exits or stalls first."""
        while True:
            found = ready()
            if found is not None:
                return found
            if self.process.poll() is not None:
                self._reader.join(timeout=10)
                raise AssertionError(f"the demo exited with {self.process.returncode} before {what}:\n{self.output}")
            if time.monotonic() - self.last_progress > STALL_S:
                raise AssertionError(f"the demo printed nothing for {STALL_S:.0f} s before {what}:\n{self.output}")
            time.sleep(0.3)

    def finish(self) -> int:
        """Wait for the exit while the demo still makes progress; its exit code."""
        code = self.wait_for(self.process.poll, "it finished") if self.process.poll() is None else self.process.poll()
        self._reader.join(timeout=30)
        assert code is not None
        return code


def test_demo_imports_verifies_and_serves_the_bundled_model(tmp_path: Path, bundled_model_cache: Path) -> None:
    home = tmp_path / "demo"
    port = free_port()
    env = {**os.environ, "APERTURE_MODEL_CACHE": str(bundled_model_cache), "COLUMNS": "200"}
    env.pop("APERTURE_HOME", None)
    env.pop("APERTURE_DATABASE_URL", None)
    demo = Watched([APERTURE, "demo", "--home", str(home), "--port", str(port)], env, tmp_path)
    try:
        info = demo.wait_for(lambda: _served(home / "demo.json"), "it served")
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
        demo.process.send_signal(signal.SIGINT)
        demo.finish()
    assert "verified 6 files" in demo.output, demo.output
    assert "admin key" in demo.output

    # A second run starts afresh in the same demo home and keeps the converted model.
    again = Watched([APERTURE, "demo", "--home", str(home), "--no-serve"], env, tmp_path)
    assert again.finish() == 0, again.output
    assert "converting" not in again.output  # the converted model was kept
    assert json.loads((home / "demo.json").read_text())["admin_key"] != info["admin_key"]


def test_demo_refuses_a_directory_that_is_not_a_demo_instance(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    done = subprocess.run([APERTURE, "demo", "--home", str(precious), "--no-serve"], capture_output=True, text=True)
    assert done.returncode == 4
    assert "is not a demo instance" in done.stderr
    assert (precious / "notes.txt").read_text() == "keep me"


def _served(demo_json: Path) -> dict[str, Any] | None:
    """The demo's description once it is written and its server answers; None until then."""
    if not demo_json.exists():
        return None
    try:
        info = json.loads(demo_json.read_text())
        if httpx.get(f"{info['base_url']}/healthz", timeout=2).status_code == 200:
            return dict(info)
    except (httpx.TransportError, json.JSONDecodeError):
        return None  # being written, or not serving yet
    return None
