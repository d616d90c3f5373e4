"""Transparency documents for a release (R6): a model card (Hugging Face card YAML front matter and
prose), a safety and security report under the GPAI Code of Practice's Model Report headings
(Measures 7.1-7.5), and the EU Model Documentation Form fields the registry can fill.

Built from `ReleaseService.transparency(...)` data; exported as Markdown, HTML, JSON or PDF (the
HTML printed by headless Chromium: no second layout engine to keep in step with the pages).

Printing starts a browser, so `ReportPrinter` keeps each PDF in the instance's files once printed
(a report's content changes only with its decision, its evidence or the policy) and prints at most
a few at once: a request beyond that bound is answered at once with `PrinterBusy`, never queued.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from aperture.core.errors import Unavailable

FORMATS = ("md", "html", "json", "pdf")
# Raise when report.html or what the report shows changes: every cached PDF is then printed again.
TEMPLATE_VERSION = 1
BUSY_RETRY_S = 5
STALE_PRINT_S = 600  # a partial print older than this was left by a crash
NOT_AVAILABLE = "not available from the registry: to be completed by the provider"


def _size_range(parameters: int | None) -> str:
    if not parameters:
        return NOT_AVAILABLE
    bounds = [
        (5e8, "1-500M"),
        (5e9, "500M-5B"),
        (1.5e10, "5B-15B"),
        (5e10, "15B-50B"),
        (1e11, "50B-100B"),
        (5e11, "100B-500B"),
        (1e12, "500B-1T"),
    ]
    return next((label for bound, label in bounds if parameters <= bound), ">1T")


def eu_model_documentation(data: dict[str, Any]) -> dict[str, Any]:
    """The Model Documentation Form (CoP Transparency chapter, Measure 1.1) fields we can fill."""
    release = data["release"]
    decision = release.get("decision") or {}
    distribution = {
        "open": "open-weights repository download",
        "licensed": "licensed weights to vetted licensees (traceable copies)",
        "hosted": "hosted API (OpenAI-compatible gateway)",
        "secured": "not distributed (internal research only)",
    }.get(release["tier"], "not yet decided")
    return {
        "document": {
            "date_last_updated": release.get("effective_at") or data["registered_at"],
            "document_version": data["profile_version"],
        },
        "general_information": {
            "provider_legal_name": NOT_AVAILABLE,
            "model_family": data["name"],
            "versioned_model": data["model"],
            "model_authenticity": f"sha256 manifest digest {data['manifest_digest']} (signed, OpenSSF model signing)",
            "release_date": release.get("effective_at") or NOT_AVAILABLE,
            "model_dependencies": data.get("base_model") or "none declared",
        },
        "model_properties": {
            "model_architecture": f"{data.get('architecture') or 'unknown'} ({data.get('model_type') or 'unknown'})",
            "input_modalities": data.get("modalities") or [NOT_AVAILABLE],
            "output_modalities": ["text"] if "text" in (data.get("modalities") or []) else [NOT_AVAILABLE],
            "total_model_size": f"{data['parameters']:.2e}" if data.get("parameters") else NOT_AVAILABLE,
            "model_size_range": _size_range(data.get("parameters")),
        },
        "distribution_and_licences": {
            "distribution_channels": distribution,
            "license_category": data.get("licence") or NOT_AVAILABLE,
        },
        "use": {"intended_uses": data.get("intended_use") or NOT_AVAILABLE},
        "training_process": {"training_design_specification": data.get("description") or NOT_AVAILABLE},
        "data": {"scope_and_main_characteristics": data.get("data_summary") or NOT_AVAILABLE},
        "computational_resources": {
            "training_compute_flop": data.get("training_flop") or NOT_AVAILABLE,
            "compute_measurement_methodology": "declared at registration"
            if data.get("training_flop")
            else NOT_AVAILABLE,
        },
        "release_decision": {
            "tier": release["tier"],
            "policy": decision.get("policy"),
            "obligations": decision.get("obligations", []),
        },
    }


def model_card_markdown(data: dict[str, Any]) -> str:
    """A Hugging Face model card: YAML front matter, then prose."""
    front = {
        "license": (data.get("licence") or "other").lower(),
        "base_model": data.get("base_model") or None,
        "tags": ["aperture", f"release-tier-{data['release']['tier']}"],
        "model_name": data["model"],
    }
    front = {k: v for k, v in front.items() if v is not None}
    release = data["release"]
    decision = release.get("decision") or {}
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {data['model']}",
        "",
        data.get("description") or "",
        "",
        "## Release",
        "",
        f"- **Tier:** {release['tier']}"
        + (f" (effective {release['effective_at']})" if release.get("effective_at") else ""),
        f"- **Decision:** {decision.get('summary', 'no decision yet')}",
        f"- **Weights' digest:** `{data['manifest_digest']}`",
        "",
        "## Intended use",
        "",
        data.get("intended_use") or NOT_AVAILABLE,
        "",
        "## Training data",
        "",
        data.get("data_summary") or NOT_AVAILABLE,
        "",
        "## Evaluation",
        "",
    ]
    lines.extend(_evidence_lines(data))
    return "\n".join(lines).strip() + "\n"


def _evidence_lines(data: dict[str, Any]) -> list[str]:
    rows = ["| Evidence | Subject | Result (95% CI) |", "|---|---|---|"]
    for item in data["evidence"]:
        headline = item.get("headline")
        result = "finding (no number)"
        if headline:
            low, high = headline["ci95"]
            result = f"{headline['metric']} {headline['value']:.3f} ({low:.3f}-{high:.3f}, n={headline['n']})"
        rows.append(f"| {item['title']} | {item.get('domain') or item.get('safeguard')} | {result} |")
    return rows if len(rows) > 2 else ["No evaluation evidence yet."]


def safety_report_markdown(data: dict[str, Any]) -> str:
    """The safety and security report, under the Code of Practice's Model Report headings."""
    release = data["release"]
    decision = release.get("decision") or {}
    current = data["current_policy_decision"]
    lines = [
        f"# Safety and security report: {data['model']}",
        "",
        "## 7.1 Model description and behaviour",
        "",
        f"{data.get('architecture') or 'Unknown architecture'}, {data.get('parameters') or 0:,} parameters, "
        f"{', '.join(data.get('modalities') or ['text'])}. Intended use: {data.get('intended_use') or NOT_AVAILABLE}",
        "",
        "## 7.2 Reasons for proceeding",
        "",
        f"Tier **{release['tier']}**. {decision.get('rationale', '')}".strip(),
        "",
        f"Policy decision: {current['summary']}",
        "",
        "Levels per risk domain:",
        "",
    ]
    lines += [f"- **{level['domain']}**: {level['level']} ({level['reason']})" for level in current["levels"]]
    lines += [
        "",
        "Conditions under which this justification would no longer hold: new evidence crossing a threshold, "
        "a serious incident, or a change of release policy (each triggers re-assessment).",
        "",
    ]
    if decision:
        lines += ["Board votes (names withheld):", ""]
        lines += [f"- {'approve' if v['approve'] else 'reject'}: {v['reason']}" for v in decision.get("votes", [])]
        lines += [
            "",
            f"Dissent: {len(decision.get('dissent', []))}; conflicts declared: {decision.get('conflicts_declared', 0)}",
            "",
        ]
    lines += ["## 7.3 Documentation of the assessment", ""]
    lines += _evidence_lines(data)
    caveats = sorted({item["caveat"] for item in data["evidence"] if item.get("caveat")})
    lines += ["", *[f"> {c}" for c in caveats], ""]
    if current["missing"]:
        lines += ["Evidence still missing: " + "; ".join(current["missing"]), ""]
    lines += [
        "## 7.4 External reports",
        "",
        "None attached to this release; expert findings appear above as evidence when filed.",
        "",
        "## 7.5 Material changes to the risk landscape",
        "",
        "None recorded for this release.",
        "",
        "## Obligations",
        "",
    ]
    lines += [f"- {o}" for o in current["obligations"]] or [
        "- No systemic-risk obligations (training compute at or below 10^25 FLOP or not declared)."
    ]
    return "\n".join(lines).strip() + "\n"


def report_markdown(data: dict[str, Any]) -> str:
    form = yaml.safe_dump(eu_model_documentation(data), sort_keys=False, allow_unicode=True)
    return (
        model_card_markdown(data)
        + "\n"
        + safety_report_markdown(data)
        + "\n# EU Model Documentation Form (fields filled from the registry)\n\n```yaml\n"
        + form
        + "```\n"
    )


def report_json(data: dict[str, Any]) -> str:
    document = {
        "model_card": {"markdown": model_card_markdown(data)},
        "safety_and_security_report": {"markdown": safety_report_markdown(data)},
        "eu_model_documentation": eu_model_documentation(data),
        "data": data,
    }
    return json.dumps(document, indent=2, default=str) + "\n"


def report_html(data: dict[str, Any]) -> str:
    environment = Environment(loader=PackageLoader("aperture.release", "templates"), autoescape=select_autoescape())
    return environment.get_template("report.html").render(
        data=data,
        release=data["release"],
        decision=data["release"].get("decision") or {},
        current=data["current_policy_decision"],
        form=eu_model_documentation(data),
        card_front=yaml.safe_dump(
            {"license": (data.get("licence") or "other").lower(), "base_model": data.get("base_model")}, sort_keys=False
        ),
    )


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    raise Unavailable(
        "PDF export prints the HTML report with headless Chromium, which is not installed",
        hint="install chromium (apt-get install chromium), or export html and print it",
    )


def html_to_pdf(html: str, timeout_s: float = 60.0) -> bytes:
    with tempfile.TemporaryDirectory(prefix="aperture-report-") as temp:
        source, target = Path(temp) / "report.html", Path(temp) / "report.pdf"
        source.write_text(html, encoding="utf-8")
        command = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={temp}/profile",
            f"--print-to-pdf={target}",
            source.as_uri(),
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=timeout_s)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            raise Unavailable(f"Chromium could not print the report ({error})", hint="export html instead") from None
        return target.read_bytes()


def render(data: dict[str, Any], fmt: str) -> bytes:
    if fmt == "md":
        return report_markdown(data).encode("utf-8")
    if fmt == "json":
        return report_json(data).encode("utf-8")
    if fmt == "html":
        return report_html(data).encode("utf-8")
    if fmt == "pdf":
        return html_to_pdf(report_html(data))
    raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")


class PrinterBusy(Unavailable):
    """Every printer is busy (or this very report is being printed): retry in a few seconds."""

    def __init__(self, retry_after_s: int = BUSY_RETRY_S) -> None:
        super().__init__(
            "every PDF printer is busy", hint=f"retry after {retry_after_s} s, or fetch the html report meanwhile"
        )
        self.retry_after_s = retry_after_s


def content_key(data: dict[str, Any]) -> str:
    """What a report's content depends on, as a digest: its decision, evidence and the policy's
    reading, without the moment the policy was asked (which differs on every request)."""
    current = {k: v for k, v in data["current_policy_decision"].items() if k != "decided_at"}
    stable = data | {"current_policy_decision": current}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]


class ReportPrinter:
    """PDF reports, each printed once per decision and content and kept under `directory`; at most
    `printers` Chromium processes at once in this process (a replica prints its own share)."""

    def __init__(self, directory: Path, printers: int = 2, print_pdf: Callable[[str], bytes] | None = None) -> None:
        self.directory = directory
        self._print = print_pdf or html_to_pdf
        self._slots = threading.BoundedSemaphore(max(1, printers))
        self._printing: set[str] = set()
        self._lock = threading.Lock()

    def path(self, version_id: str, decision_id: str | None, data: dict[str, Any]) -> Path:
        """HOME/reports/pdf/<version id>/<decision id>-<content digest>-t<template version>.pdf"""
        name = f"{decision_id or 'undecided'}-{content_key(data)}-t{TEMPLATE_VERSION}.pdf"
        return self.directory / version_id / name

    def pdf(self, version_id: str, decision_id: str | None, data: dict[str, Any]) -> bytes:
        target = self.path(version_id, decision_id, data)
        with contextlib.suppress(FileNotFoundError):
            return target.read_bytes()
        key = str(target)
        with self._lock:
            if key in self._printing:  # being printed by another request: it is there in a moment
                raise PrinterBusy()
            self._printing.add(key)
        try:
            if not self._slots.acquire(blocking=False):
                raise PrinterBusy()
            try:
                with contextlib.suppress(FileNotFoundError):
                    return target.read_bytes()  # printed meanwhile (another replica)
                content = self._print(report_html(data))
                self._keep(target, content)
            finally:
                self._slots.release()
        finally:
            with self._lock:
                self._printing.discard(key)
        return content

    @staticmethod
    def _keep(target: Path, content: bytes) -> None:
        """Write atomically (a reader never sees half a file) and drop the version's older PDFs."""
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=".printing-", suffix=".pdf")
        temporary = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            temporary.replace(target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        stale_before = time.time() - STALE_PRINT_S
        for older in target.parent.glob("*.pdf"):
            printing = older.name.startswith(".printing-")
            with contextlib.suppress(FileNotFoundError):
                if older != target and (not printing or older.stat().st_mtime < stale_before):
                    older.unlink()  # an earlier content of this report, or a print a crash left behind
