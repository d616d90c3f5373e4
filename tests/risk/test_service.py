"""Risk service on a real database: runs with replayable inputs, resume, evidence import, findings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from aperture.access.domain import ANONYMOUS, SYSTEM, Caller, Role
from aperture.bootstrap import Services
from aperture.core.errors import Conflict, Forbidden, IntegrityFailure, InvalidInput, NotFound, Unauthenticated
from aperture.registry.domain import ModelVersion
from aperture.risk import store
from aperture.risk.domain import RiskDomain, Safeguard
from aperture.risk.scoring import GenerationSettings
from aperture.risk.service import RunOptions

QUICK = GenerationSettings(max_new_tokens=6, time_limit_s=30)


def _count(services: Services, table: str) -> int:
    with services.database.read() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)


def test_knowledge_run_records_replayable_inputs_evidence_profile_and_audit(
    services: Services, tiny_version: ModelVersion
) -> None:
    outcome = services.risk.run_suite(SYSTEM, tiny_version.reference, "wmdp-bio", RunOptions(limit=20, chunk_items=8))
    assert outcome.status == "completed" and outcome.items == 20
    evidence = outcome.evidence
    assert evidence is not None and evidence.headline is not None
    assert evidence.headline.n == 20 and evidence.headline.chance == 0.25
    provenance = evidence.provenance
    assert provenance["model_digest"] == tiny_version.manifest_digest
    assert provenance["data_files"] == {
        "wmdp/bio_questions.json": "b706e75ba4f70389009d71f9922187d326c20d1da09f089a08ec2d853c5ed082"
    }
    assert provenance["engine"]["engine"] == "transformers" if "engine" in provenance else True
    assert provenance["prompt_format"].startswith("The following are multiple choice questions")
    details = services.risk.run_details(SYSTEM, outcome.run_id)
    assert len(details["results"]) == 20
    assert all(len(r["detail"]["loglikelihoods"]) == 4 for r in details["results"])
    profile = services.risk.profile(tiny_version.reference, caller=SYSTEM)
    assert profile["profile_version"] == outcome.profile_version == 1
    bio = next(row for row in profile["domains"] if row["subject"] == "bio")
    assert bio["evidence"] == [evidence.id]
    actions = [e.action for e in services.audit.list_events(limit=20)]
    assert "risk.run.started" in actions and "risk.run.completed" in actions
    # A new run makes a new profile version; the old one stays readable.
    services.risk.run_suite(SYSTEM, tiny_version.reference, "wmdp-bio", RunOptions(limit=4))
    assert services.risk.profile(tiny_version.reference, caller=SYSTEM)["profile_version"] == 2
    assert services.risk.profile(tiny_version.reference, 1, caller=SYSTEM)["profile_version"] == 1


def test_generative_suites_end_to_end(services: Services, tiny_version: ModelVersion) -> None:
    ref = tiny_version.reference
    refusal = services.risk.run_suite(SYSTEM, ref, "strongreject", RunOptions(limit=3, generation=QUICK))
    jailbreak = services.risk.run_suite(SYSTEM, ref, "jailbreak", RunOptions(limit=2, generation=QUICK))
    xstest = services.risk.run_suite(SYSTEM, ref, "xstest", RunOptions(limit=6, generation=QUICK))
    assert refusal.evidence and refusal.evidence.headline and refusal.evidence.headline.n == 3
    assert jailbreak.items == 2 * 7  # every prompt in every template
    assert jailbreak.evidence and len(jailbreak.evidence.summary["by_template"]) == 7
    assert jailbreak.evidence.provenance["template_set"] == "aperture-jailbreaks-1"
    assert xstest.evidence and "safe" in xstest.evidence.summary
    details = services.risk.run_details(SYSTEM, refusal.run_id)
    assert all(r["detail"]["new_tokens"] <= 6 for r in details["results"])


def test_bad_requests_change_nothing(services: Services, tiny_version: ModelVersion) -> None:
    runs_before = _count(services, "risk_runs")
    with pytest.raises(InvalidInput, match="no suite named"):
        services.risk.run_suite(SYSTEM, tiny_version.reference, "wmdp-biology")
    with pytest.raises(NotFound):
        services.risk.run_suite(SYSTEM, "nope:1", "wmdp-bio")
    with pytest.raises(Unauthenticated):
        services.risk.run_suite(ANONYMOUS, tiny_version.reference, "wmdp-bio")
    with pytest.raises(Forbidden):
        services.risk.run_suite(Caller("x", (Role.LICENSEE,), "k"), tiny_version.reference, "wmdp-bio")
    with pytest.raises(NotFound):
        services.risk.resume(SYSTEM, "no-such-run")
    assert _count(services, "risk_runs") == runs_before == 0


def test_operator_data_directory_with_a_broken_file(
    services: Services, tiny_version: ModelVersion, tmp_path: Path
) -> None:
    """An operator's own data: hashes recorded; a schema error names the file and the item."""
    from aperture.risk.datasets import DataDirectory

    private = tmp_path / "private-data" / "wmdp"
    private.mkdir(parents=True)
    (private / "bio_questions.json").write_text(
        json.dumps([{"question": "q?", "choices": ["a", "b", "c", "d"], "answer": 4}])
    )
    services.risk.data = DataDirectory(tmp_path / "private-data")
    with pytest.raises(InvalidInput, match=r"item 0: `answer` must be an index from 0 to 3, got 4"):
        services.risk.run_suite(SYSTEM, tiny_version.reference, "wmdp-bio")
    (private / "bio_questions.json").write_text(
        json.dumps([{"question": "q?", "choices": ["a", "b", "c", "d"], "answer": 1}] * 3)
    )
    outcome = services.risk.run_suite(SYSTEM, tiny_version.reference, "wmdp-bio")
    assert outcome.evidence and outcome.evidence.provenance["data_dir"] == str(tmp_path / "private-data")
    assert _count(services, "risk_runs") == 1


def test_bundled_data_is_checked_against_its_manifest(tmp_path: Path) -> None:
    import shutil

    from aperture.risk.datasets import DataDirectory, bundled_data_dir

    copy = tmp_path / "data"
    shutil.copytree(bundled_data_dir(), copy)
    with (copy / "wmdp" / "bio_questions.json").open("a") as handle:
        handle.write(" ")
    with pytest.raises(IntegrityFailure, match="does not match its manifest"):
        DataDirectory(copy).read("wmdp/bio_questions.json")
    with pytest.raises(InvalidInput, match="leaves the data directory"):
        DataDirectory(copy).read("../../etc/passwd")


def _cli(home: Path, env_extra: dict[str, str], *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "APERTURE_HOME": str(home), **env_extra}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "aperture"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_killed_run_resumes_from_the_last_chunk(services: Services, tiny_version: ModelVersion) -> None:
    """A process killed mid-run leaves its completed chunks and no evidence; resume finishes it."""
    env = {"APERTURE_DATABASE_URL": services.settings.resolved_database_url, "APERTURE_EVAL_BATCH_TOKENS": "256"}
    home = services.settings.home
    process = _cli(home, env, "assess", "run", tiny_version.reference, "--suite", "wmdp-bio", "--json")
    deadline = time.monotonic() + 120
    run_id = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the run ended ({process.returncode}) before it could be killed: {process.communicate()}")
        with services.database.read() as connection:
            runs = store.list_runs(connection)
        if runs and runs[0]["items_done"] >= 64:
            run_id = runs[0]["id"]
            break
        time.sleep(0.2)
    assert run_id is not None, "the run made no progress"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    with services.database.read() as connection:
        run = store.load_run(connection, run_id)
        chunks = store.load_chunks(connection, run_id)
    assert run is not None and run["status"] == "running" and run["evidence_id"] is None
    done = sum(len(c) for c in chunks.values())
    assert 0 < done < 1273
    # nothing half-written is reported
    assert services.risk.profile(tiny_version.reference, caller=SYSTEM)["evidence"] == []
    resumed = _cli(home, env, "assess", "resume", run_id, "--json")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    outcome = json.loads(out)
    assert outcome["status"] == "completed" and outcome["items"] == 1273
    assert outcome["resumed_items"] == done
    assert outcome["evidence"]["headline"]["n"] == 1273
    with pytest.raises(Conflict, match="already complete"):
        services.risk.resume(SYSTEM, run_id)


def test_interrupted_run_is_recorded_and_resumable(services: Services, tiny_version: ModelVersion) -> None:
    """Ctrl-C (KeyboardInterrupt) between chunks: the run is marked failed with its chunks kept."""
    original = services.risk._local_runner
    calls = {"n": 0}

    def interrupt_after_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        for item in original(*args, **kwargs):
            calls["n"] += 1
            yield item
            if calls["n"] == 1:
                raise KeyboardInterrupt

    services.risk.chunk_runner = interrupt_after_first
    with pytest.raises(KeyboardInterrupt):
        services.risk.run_suite(SYSTEM, tiny_version.reference, "wmdp-bio", RunOptions(limit=24, chunk_items=8))
    [run] = services.risk.runs(SYSTEM, tiny_version.reference)
    assert run["status"] == "failed" and "KeyboardInterrupt" in run["error"] and run["items_done"] == 8
    services.risk.chunk_runner = None
    outcome = services.risk.resume(SYSTEM, run["id"])
    assert outcome.resumed_items == 8 and outcome.items == 24


def _inspect_log(
    path: Path, digest: str | None, *, task: str = "inspect_evals/wmdp_bio", status: str = "success"
) -> Path:
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalMetric,
        EvalResults,
        EvalScore,
        EvalSpec,
        write_eval_log,
    )

    metadata = {"model_digest": f"sha256:{digest}"} if digest else {}
    spec = EvalSpec(
        created="2026-11-20T10:00:00+00:00",
        task=task,
        dataset=EvalDataset(name="wmdp-bio", samples=1273),
        model="vllm/aperture-model",
        config=EvalConfig(),
        metadata=metadata,
    )
    results = EvalResults(
        total_samples=1273,
        completed_samples=1273,
        scores=[
            EvalScore(
                name="choice",
                scorer="choice",
                metrics={
                    "accuracy": EvalMetric(name="accuracy", value=0.42),
                    "stderr": EvalMetric(name="stderr", value=0.014),
                },
            )
        ],
    )
    write_eval_log(EvalLog(eval=spec, status=status, results=results), str(path))
    return path


def test_import_inspect_logs_both_formats(services: Services, tiny_version: ModelVersion, tmp_path: Path) -> None:
    for name in ("run.eval", "run.json"):
        log = _inspect_log(tmp_path / name, tiny_version.manifest_digest)
        items, profile_version = services.risk.import_log(SYSTEM, tiny_version.reference, log.read_bytes(), name)
        [item] = items
        assert item.domain is RiskDomain.BIO and item.headline is not None
        assert item.headline.successes == round(0.42 * 1273) and item.headline.n == 1273
        assert item.provenance["model_bound"] is True
        assert len(item.provenance["sha256"]) == 64
    assert profile_version == 2


def test_import_refuses_bad_logs_and_records_overrides(
    services: Services, tiny_version: ModelVersion, tmp_path: Path
) -> None:
    ref = tiny_version.reference
    other = _inspect_log(tmp_path / "other.eval", "f" * 64).read_bytes()
    with pytest.raises(Conflict, match=r"produced on model digest f+"):
        services.risk.import_log(SYSTEM, ref, other, "other.eval")
    good = _inspect_log(tmp_path / "good.eval", tiny_version.manifest_digest).read_bytes()
    with pytest.raises(InvalidInput, match="damaged or truncated"):
        services.risk.import_log(SYSTEM, ref, good[: len(good) // 2], "cut.eval")
    with pytest.raises(InvalidInput, match="neither an Inspect"):
        services.risk.import_log(SYSTEM, ref, b"\x80\x04\x95 pickle bytes", "model.pkl")
    failed = _inspect_log(tmp_path / "failed.json", None, status="error").read_bytes()
    with pytest.raises(InvalidInput, match="did not finish"):
        services.risk.import_log(SYSTEM, ref, failed, "failed.json")
    unknown = _inspect_log(tmp_path / "gsm.json", None, task="inspect_evals/gsm8k").read_bytes()
    with pytest.raises(InvalidInput, match="no task Aperture can map"):
        services.risk.import_log(SYSTEM, ref, unknown, "gsm.json")
    assert _count(services, "risk_evidence") == 0
    items, _ = services.risk.import_log(
        SYSTEM, ref, other, "other.eval", override_reason="same weights re-served under a quantised name"
    )
    assert items[0].provenance["override_reason"] == "same weights re-served under a quantised name"
    assert items[0].provenance["model_bound"] is False
    event = services.audit.list_events(limit=1)[0]
    assert event.action == "risk.evidence.imported"
    assert event.details["override_reason"] == "same weights re-served under a quantised name"


def test_findings_with_attachment(services: Services, tiny_version: ModelVersion, tmp_path: Path) -> None:
    report = tmp_path / "red-team.pdf"
    report.write_bytes(b"%PDF-1.7 red team report")
    evidence, _ = services.risk.add_finding(
        SYSTEM,
        tiny_version.reference,
        title="Uplift on protocol troubleshooting",
        summary="Three of five experts found material uplift.",
        author="Red team B",
        domain=RiskDomain.BIO,
        attachment=report,
    )
    assert evidence.provenance["attachment"] == "red-team.pdf"
    assert services.vault.blob_path(evidence.provenance["sha256"]).read_bytes() == report.read_bytes()
    with pytest.raises(InvalidInput, match="domain or a safeguard"):
        services.risk.add_finding(SYSTEM, tiny_version.reference, title="t", summary="", author="a")
    with pytest.raises(NotFound):
        services.risk.add_finding(
            SYSTEM,
            tiny_version.reference,
            title="t",
            summary="",
            author="a",
            safeguard=Safeguard.REFUSAL,
            attachment=tmp_path / "missing.pdf",
        )
    profile = services.risk.profile(tiny_version.reference, caller=SYSTEM)
    bio = next(row for row in profile["domains"] if row["subject"] == "bio")
    assert bio["evidence"] == [evidence.id] and bio["headline"] is None  # a finding carries no number


def test_a_local_model_as_rubric_judge_degrades_to_rules_when_it_ignores_the_format(
    services: Services, tiny_version: ModelVersion, tiny_model_dir: Path
) -> None:
    """A random judge never answers '1.b 0 ...': answers keep the rule-based class and no score is invented."""
    options = RunOptions(limit=2, generation=QUICK, judge=f"model:{tiny_model_dir}")
    outcome = services.risk.run_suite(SYSTEM, tiny_version.reference, "strongreject", options)
    assert outcome.evidence is not None
    assert outcome.evidence.provenance["judge"] == f"model:{tiny_model_dir}"
    assert "strongreject_score" not in outcome.evidence.summary
    results = services.risk.run_details(SYSTEM, outcome.run_id)["results"]
    assert all("response_class" in r and "rubric" not in r for r in results)
    runs_before = len(services.risk.runs(SYSTEM))
    with pytest.raises(InvalidInput, match=r"has no config\.json"):
        services.risk.run_suite(
            SYSTEM, tiny_version.reference, "strongreject", RunOptions(judge=f"model:{tiny_model_dir}/nope")
        )
    with pytest.raises(InvalidInput, match="engine 'vllm' is not understood"):
        services.risk.run_suite(SYSTEM, tiny_version.reference, "strongreject", RunOptions(engine="vllm"))
    assert len(services.risk.runs(SYSTEM)) == runs_before


def test_upper_tier_versions_are_not_evaluated_in_process_and_stay_hidden(services: Services, tmp_path: Path) -> None:
    """Sealed weights never leave the vault for a local run; someone not cleared gets not-found."""
    from tests.security.world import build_world

    world = build_world(services, tmp_path)
    sealed = world.sealed.reference
    with pytest.raises(Forbidden, match="upper-tier"):
        services.risk.run_suite(world.caller("alice"), sealed, "wmdp-bio", RunOptions(limit=2))
    with pytest.raises(NotFound):
        services.risk.run_suite(world.caller("lena"), sealed, "wmdp-bio", RunOptions(limit=2))
    with pytest.raises(NotFound):
        services.risk.profile(sealed, caller=world.caller("lena"))
    assert services.risk.profile(sealed, caller=world.caller("alice"))["evidence"] == []
    assert services.risk.runs(SYSTEM) == []
