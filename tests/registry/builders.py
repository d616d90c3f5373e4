"""Tiny model files the tests build themselves: safetensors, GGUF and Hugging Face directories."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def write_safetensors(path: Path, tensors: dict[str, np.ndarray] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if tensors is None:
        tensors = {
            "embed.weight": np.arange(32, dtype=np.float32).reshape(8, 4),
            "head.bias": np.ones(4, dtype=np.float16),
        }
    save_file(tensors, str(path))
    return path


def raw_safetensors(header: dict[str, object], data: bytes, *, length: int | None = None) -> bytes:
    body = json.dumps(header).encode()
    return struct.pack("<Q", len(body) if length is None else length) + body + data


def write_gguf(path: Path, *, arch: str = "llama") -> Path:
    from gguf import GGUFWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), arch)
    writer.add_name("tiny")
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_token_list(["<s>", "</s>", "a", "b"])
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_hf_directory(root: Path, *, sharded: bool = False) -> Path:
    """A small Hugging Face model directory: config, weights (optionally sharded), tokenizer, README."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4})
    )
    (root / "generation_config.json").write_text(json.dumps({"bos_token_id": 1}))
    (root / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    (root / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    (root / "README.md").write_text("# tiny\n\nA test model.\n")
    first = {"model.embed.weight": np.arange(48, dtype=np.float32).reshape(12, 4)}
    second = {"model.norm.weight": np.ones(4, dtype=np.float32), "lm_head.weight": np.zeros((12, 4), np.float32)}
    if not sharded:
        write_safetensors(root / "model.safetensors", {**first, **second})
        return root
    write_safetensors(root / "model-00001-of-00002.safetensors", first)
    write_safetensors(root / "model-00002-of-00002.safetensors", second)
    weight_map = {name: "model-00001-of-00002.safetensors" for name in first}
    weight_map.update({name: "model-00002-of-00002.safetensors" for name in second})
    (root / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    return root


def write_pickle(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))  # written, never loaded
    return path
