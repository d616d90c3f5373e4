"""`aperture policy ...` and `aperture release ...` through the real CLI on a real instance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aperture.access.domain import SYSTEM, Role
from aperture.bootstrap import Services
from aperture.release.service import ReleaseService
from tests.registry.builders import write_hf_directory
from tests.registry.test_cli import run

__all__ = ["run"]


def test_policy_check_diff_and_bad_files(run: Any, tmp_path: Path) -> None:
    shipped = tmp_path / "default.yaml"
    shipped.write_text(ReleaseService.shipped_policy_text())
    ok = run("policy", "check", str(shipped))
    assert ok.exit_code == 0 and "aperture-default v1: valid, 15 rules" in ok.output
    typo = tmp_path / "typo.yaml"
    typo.write_text(shipped.read_text().replace("type: marginal_risk", "type: marginal_risks"))
    bad = run("policy", "check", str(typo))
    assert bad.exit_code == 2 and "unknown rule type 'marginal_risks'" in bad.output and "did you mean" in bad.output
    missing = run("policy", "check", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 3
    stricter = tmp_path / "v2.yaml"
    stricter.write_text(
        shipped.read_text().replace("version: 1\n", "version: 2\n", 1).replace("above: 0.40", "above: 0.35", 1)
    )
    changes = json.loads(run("policy", "diff", str(shipped), str(stricter), "--json").output)
    assert {"kind": "changed", "rule": "bio-knowledge-notable", "detail": "line: 0.4 -> 0.35"} in changes


def test_adopt_decide_propose_with_keys_and_report(run: Any, services: Services, tmp_path: Path) -> None:
    services.registry.register(SYSTEM, write_hf_directory(tmp_path / "m"), "small", "1.0", training_flop="1e20")
    decided = json.loads(run("release", "decide", "small:1.0", "--json").output)
    assert decided["tier"] == "secured" and "evidence for bio" in decided["missing"]
    assert "release.decided" not in [e.action for e in services.audit.list_events(limit=50)]
    director = services.access.issue_key(SYSTEM, name="d", principal="dora", roles=(Role.RESEARCHER,))
    refused = run("release", "propose", "small:1.0", "--tier", "open", "--rationale", "x", "--key", director.text)
    assert refused.exit_code == 6 and "programme_director" in refused.output
    policy = tmp_path / "v2.yaml"
    policy.write_text(ReleaseService.shipped_policy_text().replace("version: 1\n", "version: 2\n", 1))
    adopted = run("policy", "adopt", str(policy), "--reason", "a new version")
    assert adopted.exit_code == 0 and "adopted aperture-default v2" in adopted.output
    listed = json.loads(run("policy", "list", "--json").output)
    assert [row["version"] for row in listed] == ["2", "1"] and all(row["signature_valid"] for row in listed)
    report = tmp_path / "report.md"
    written = run("release", "report", "small:1.0", "--format", "md", "--output", str(report))
    assert written.exit_code == 0 and report.read_text().startswith("---\n")
    pdf_without_file = run("release", "report", "small:1.0", "--format", "pdf")
    assert pdf_without_file.exit_code == 2 and "--output" in pdf_without_file.output
    assert "small:1.0" in run("release", "registry").output
