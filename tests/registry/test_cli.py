"""`aperture models ...` through the real Typer app: JSON output, exit codes, fast start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from tests.conftest import cli_runner
from tests.registry.builders import write_hf_directory, write_pickle, write_safetensors


@pytest.fixture
def run(services: Services) -> Iterator[object]:
    yield from cli_runner(services.settings)


def test_register_list_show_verify_export(run: object, tmp_path: Path) -> None:
    invoke = run  # type: ignore[assignment]
    root = write_hf_directory(tmp_path / "hf", sharded=True)
    result = invoke(
        "models",
        "register",
        str(root),
        "--name",
        "tiny",
        "--version",
        "1.0",
        "--licence",
        "Apache-2.0",
        "--base-model",
        "HuggingFaceTB/SmolLM2-135M",
        "--base-licence",
        "Apache-2.0",
        "--training-flop",
        "1e21",
        "--modality",
        "text",
        "--intended-use",
        "tests",
        "--json",
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["reference"] == "tiny:1.0" and body["parameter_count"] == 100 and body["created"]
    lineage = {"base_model": "HuggingFaceTB/SmolLM2-135M", "external": True, "base_licence": "Apache-2.0"}
    assert body["lineage"] == lineage
    assert body["training_flop"] == str(10**21)

    listed = json.loads(invoke("models", "list", "--json").stdout)
    assert [(m["name"], m["versions"]) for m in listed] == [("tiny", ["1.0"])]
    shown = json.loads(invoke("models", "show", "tiny", "--json").stdout)
    assert [v["version"] for v in shown["versions"]] == ["1.0"]
    version = json.loads(invoke("models", "show", "tiny:1.0", "--json").stdout)
    assert {f["path"] for f in version["files"]} >= {"config.json", "model.safetensors.index.json"}
    assert "tiny:1.0" in invoke("models", "show", "tiny:1.0").stdout
    assert "tiny" in invoke("models", "list").stdout

    verified = invoke("models", "verify", "tiny:1.0", "--json")
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True
    assert "OK" in invoke("models", "verify", "tiny:1.0").stdout

    exported = invoke("models", "export", "tiny:1.0", str(tmp_path / "out"), "--json")
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "out" / "model.sig").is_file()
    assert "model_signing verify key" in invoke("models", "export", "tiny:1.0", str(tmp_path / "out2")).stdout


@pytest.mark.parametrize(
    ("setup", "code", "needle"),
    [
        ("missing", 3, "does not exist"),
        ("pickle", 2, "pickle"),
        ("licence", 2, "malformed licence"),
        ("duplicate", 4, "already registered"),
    ],
)
def test_errors_map_to_exit_codes_with_a_hint(run: object, tmp_path: Path, setup: str, code: int, needle: str) -> None:
    invoke = run  # type: ignore[assignment]
    path = write_safetensors(tmp_path / "m.safetensors")
    extra: list[str] = []
    if setup == "missing":
        path = tmp_path / "nope"
    elif setup == "pickle":
        path = write_pickle(tmp_path / "model.bin")
    elif setup == "licence":
        extra = ["--licence", "apache 2"]
    elif setup == "duplicate":
        assert invoke("models", "register", str(path), "--name", "m", "--version", "1").exit_code == 0
    result = invoke("models", "register", str(path), "--name", "m", "--version", "1", *extra)
    assert result.exit_code == code, result.output
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    assert needle in stderr and "hint" in stderr


def test_unknown_version_is_exit_code_3(run: object) -> None:
    invoke = run  # type: ignore[assignment]
    result = invoke("models", "show", "nope:1")
    assert result.exit_code == 3 and "no version nope:1" in " ".join(result.stderr.split())
    assert invoke("models", "verify", "not-a-reference").exit_code == 2


def test_the_cli_starts_without_torch_transformers_or_model_signing() -> None:
    code = (
        "import sys, aperture.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'model_signing', 'gguf') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_verify_names_an_edited_fact_and_guides_through_unsigned_facts(
    run: object, services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import text

    from tests.registry.test_integrity import _legacy_signing

    invoke = run  # type: ignore[assignment]
    root = write_hf_directory(tmp_path / "hf")
    assert (
        invoke("models", "register", str(root), "--name", "m", "--version", "1", "--training-flop", "1e21").exit_code
        == 0
    )
    body = json.loads(invoke("models", "verify", "m:1", "--json").stdout)
    assert body["facts"] == "signed" and len(body["facts_digest"]) == 64 and body["facts_event"] >= 0
    assert "facts signed" in invoke("models", "verify", "m:1").stdout
    with services.database.transaction() as connection:
        connection.execute(text("UPDATE registry_versions SET training_flop = '1' WHERE version = '1'"))
    failed = invoke("models", "verify", "m:1")
    assert failed.exit_code == 7
    assert "training_flop" in " ".join(failed.stderr.split())

    with monkeypatch.context() as patch:
        _legacy_signing(patch, services)
        services.registry.register(SYSTEM, root, "old", "1")
    unsigned = invoke("models", "verify", "old:1")
    assert unsigned.exit_code == 0, unsigned.output
    text_out = " ".join(unsigned.stdout.split())
    assert "facts unsigned" in text_out and "`aperture models sign-facts old:1`" in text_out
    signed = invoke("models", "sign-facts", "old:1", "--json")
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.stdout)["facts_digest"]
    assert json.loads(invoke("models", "verify", "old:1", "--json").stdout)["facts"] == "signed"
    again = invoke("models", "sign-facts", "old:1")
    assert again.exit_code == 4 and "already signed" in " ".join(again.stderr.split())
