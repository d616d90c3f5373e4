"""The public PDF report through the real server under a burst of concurrent requests: Chromium is
started at most `APERTURE_RELEASE_REPORT_PRINTERS` times at once and once per report; requests beyond
the bound get 503 with Retry-After and the standard error body at once; a printed report is served
from the instance's files; new evidence prints it again."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aperture.access.domain import SYSTEM, SecurityLevel
from aperture.bootstrap import build_services, init_instance
from aperture.registry.domain import ModelVersion
from aperture.settings import Settings
from aperture.testing.server import running_server
from aperture.web.app import create_app
from tests.registry.builders import write_hf_directory
from tests.release.conftest import SteppingClock
from tests.release.world import Board, build_board

pytestmark = pytest.mark.browser  # prints with the real headless Chromium

AT_CHANCE = {"bio": 0.25, "chem": 0.25, "cyber": 0.25}
BURST = 6  # concurrent requests per report


class PrintWatch:
    """Chromium processes this test process starts to print (`--print-to-pdf`), seen from /proc:
    how many at most at once, and how many in all."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PrintWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            printing = set()
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                    command = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if parent == me and b"--print-to-pdf=" in command:
                    printing.add(int(entry.name))
            self.seen |= printing
            self.most = max(self.most, len(printing))
            time.sleep(0.01)


@dataclass
class Reports:
    board: Board
    url: str
    other: ModelVersion


@pytest.fixture
def reports(settings: Settings, tmp_path: Path) -> Iterator[Reports]:
    clock = SteppingClock()
    services = build_services(settings.model_copy(update={"release_report_printers": 1}), clock=clock)
    try:
        init_instance(services)
        board = build_board(services, tmp_path)
        board.import_knowledge(AT_CHANCE)
        source = write_hf_directory(tmp_path / "other")
        (source / "README.md").write_text("# another model\n")
        other = services.registry.register(SYSTEM, source, "other", "1.0", level=SecurityLevel.SL1).version
        with running_server(create_app(services)) as url:
            yield Reports(board, url, other)
    finally:
        services.close()


def fetch(url: str) -> httpx.Response:
    return httpx.get(url, timeout=120)


def burst(urls: list[str]) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        return list(pool.map(fetch, urls))


def until_printed(url: str) -> httpx.Response:
    """Retry as the Retry-After header says until the PDF comes (progress, not a deadline)."""
    while True:
        response = fetch(url)
        if response.status_code != 503:
            return response
        time.sleep(min(float(response.headers["retry-after"]), 0.2))


def test_a_burst_of_pdf_requests_starts_chromium_once_per_report_and_never_beyond_the_bound(
    reports: Reports,
) -> None:
    small = f"{reports.url}/api/v1/registry/small/1.0/report.pdf"
    other = f"{reports.url}/api/v1/registry/other/1.0/report.pdf"
    with PrintWatch() as watch:
        answers = burst([small] * BURST + [other] * BURST)
        printed = [until_printed(small), until_printed(other)]
    assert {a.status_code for a in answers} <= {200, 503}, [a.text for a in answers if a.status_code not in (200, 503)]
    busy = [a for a in answers if a.status_code == 503]
    assert busy, "a burst beyond the bound is answered 503 at once"
    for answer in busy:
        assert int(answer.headers["retry-after"]) > 0
        error = answer.json()["error"]
        assert error["code"] == "unavailable" and error["message"] and error["hint"]
    assert all(p.status_code == 200 and p.content.startswith(b"%PDF") for p in printed)
    assert watch.most <= 1, f"{watch.most} Chromium processes printed at once (bound 1)"
    assert len(watch.seen) <= 2, f"{len(watch.seen)} Chromium processes for 2 reports"

    # Printed once: the same burst now comes from the instance's files, starting no browser.
    with PrintWatch() as again:
        cached = burst([small] * BURST + [other] * BURST)
    assert all(c.status_code == 200 and c.content == printed[i // BURST].content for i, c in enumerate(cached))
    assert again.seen == set()
    kept = list((reports.board.services.settings.home / "reports" / "pdf").rglob("*.pdf"))
    assert len(kept) == 2

    # New evidence changes the report: it is printed again, once, and the older file goes.
    reports.board.import_knowledge({"bio": 0.26, "chem": 0.25, "cyber": 0.25})
    with PrintWatch() as fresh:
        renewed = until_printed(small)
    assert renewed.status_code == 200 and len(fresh.seen) == 1
    assert len(list((reports.board.services.settings.home / "reports" / "pdf").rglob("*.pdf"))) == 2
