"""Models for the risk tests: the bundled model converted once per run, and a tiny random model
with the same tokenizer (fast enough for every engine and service test)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aperture.access.domain import SYSTEM
from aperture.bootstrap import Services
from aperture.ml import bundled
from aperture.registry.domain import ModelVersion

TINY_NAME = "tiny-llama"
TINY_VERSION = "1.0.0"


@pytest.fixture(scope="session")
def bundled_model_dir(bundled_model_cache: Path) -> Path:
    return bundled.convert_to_safetensors(bundled.find_bundled_gguf(), bundled_model_cache)


@pytest.fixture(scope="session")
def tiny_model_dir(bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template (seeded: same weights every run)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_dir))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(1234)
    model = LlamaForCausalLM(config)
    target = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target


def register_tiny(services: Services, source: Path, tmp_path: Path) -> ModelVersion:
    copy = tmp_path / "tiny-source"
    shutil.copytree(source, copy)
    return services.registry.register(SYSTEM, copy, TINY_NAME, TINY_VERSION, licence="Apache-2.0").version


@pytest.fixture
def tiny_version(services: Services, tiny_model_dir: Path, tmp_path: Path) -> ModelVersion:
    return register_tiny(services, tiny_model_dir, tmp_path)
