"""The mark and its detector on tiny Llama-shaped weights: every attack of the issue that is cheap
enough for a unit test (fine-tuning of the real model, LoRA and GGUF Q4 of the bundled model are
in bench/bench_trace_robustness.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from aperture.core.errors import InvalidInput, UnsafeInput
from aperture.licensing import marking
from aperture.licensing.weights import EMBEDDING, open_suspect, permute_rope, requantized_reference
from tests.licensing.world import tiny_llama_weights

MASTER = b"m" * 32
ORGS = [f"org{i}" for i in range(6)]


@pytest.fixture(scope="module")
def base() -> dict[str, np.ndarray]:
    return tiny_llama_weights(layers=3)


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    return [marking.licensee_seed(MASTER, "tiny", "1.0", org) for org in ORGS]


def scores(
    suspect: dict[str, np.ndarray], base: dict[str, np.ndarray], seeds: list[bytes], reference=None
) -> list[float]:
    registered, _ = marking.register(suspect, base, embedding=EMBEDDING)
    residual = marking.residual(registered, base, reference)
    return [marking.zscore(residual, seed) for seed in seeds]


def innocent_max(z: list[float], guilty: set[int]) -> float:
    return max(value for index, value in enumerate(z) if index not in guilty)


def test_seeds_are_keyed_per_model_version_and_licensee() -> None:
    a = marking.licensee_seed(MASTER, "m", "1", "acme")
    assert a == marking.licensee_seed(MASTER, "m", "1", "acme")
    assert a != marking.licensee_seed(MASTER, "m", "2", "acme")
    assert a != marking.licensee_seed(MASTER, "m", "1", "beta")
    assert a != marking.licensee_seed(b"n" * 32, "m", "1", "acme")
    with pytest.raises(ValueError):
        marking.licensee_seed(b"short", "m", "1", "acme")


def test_the_mark_touches_only_block_projections_and_is_small(base, seeds) -> None:
    copy = marking.embed(base, seeds[0])
    assert copy[EMBEDDING] is base[EMBEDDING]
    assert copy["model.norm.weight"] is base["model.norm.weight"]
    assert len(marking.marked_names(base)) == 3 * 7
    assert 0.0015 < marking.energy_ratio(copy, base) < 0.0025  # 0.2 % of the weights at alpha = 2e-3


def test_clean_copy_accuses_only_its_licensee(base, seeds) -> None:
    z = scores(marking.embed(base, seeds[2]), base, seeds)
    assert z[2] > 100
    assert innocent_max(z, {2}) < 4


def test_unrelated_model_and_the_original_accuse_nobody(base, seeds) -> None:
    unrelated = tiny_llama_weights(seed=99, layers=3)
    assert max(abs(v) for v in scores(unrelated, base, seeds)) < 4.5
    assert max(abs(v) for v in scores(base, base, seeds)) == 0.0


def test_ffn_and_head_permutations_are_registered_away(base, seeds) -> None:
    rng = np.random.default_rng(3)
    copy = dict(marking.embed(base, seeds[1]))
    for layer in range(3):
        mlp = f"model.layers.{layer}.mlp."
        order = rng.permutation(copy[mlp + "gate_proj.weight"].shape[0])
        copy[mlp + "gate_proj.weight"] = copy[mlp + "gate_proj.weight"][order]
        copy[mlp + "up_proj.weight"] = copy[mlp + "up_proj.weight"][order]
        copy[mlp + "down_proj.weight"] = copy[mlp + "down_proj.weight"][:, order]
    registered, report = marking.register(copy, base, embedding=EMBEDDING)
    assert len(report.row_permuted) == 6 and len(report.column_permuted) == 3
    z = [marking.zscore(marking.residual(registered, base), seed) for seed in seeds]
    assert z[1] > 100 and innocent_max(z, {1}) < 4
    unregistered = marking.residual({k: copy[k] for k in marking.marked_names(base)}, base)
    assert marking.zscore(unregistered, seeds[1]) < 0.5 * z[1]


def test_rotation_of_the_residual_stream_is_registered_away(base, seeds) -> None:
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    q = q.astype(np.float32)
    copy = {}
    for name, value in marking.embed(base, seeds[3]).items():
        if name == EMBEDDING or any(p in name for p in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")):
            copy[name] = value @ q
        elif "o_proj" in name or "down_proj" in name:
            copy[name] = q.T @ value
        else:
            copy[name] = value
    registered, report = marking.register(copy, base, embedding=EMBEDDING)
    assert report.rotated
    z = [marking.zscore(marking.residual(registered, base), seed) for seed in seeds]
    assert z[3] > 100 and innocent_max(z, {3}) < 4


def test_int8_pruning_and_rescaling(base, seeds) -> None:
    def int8(a: np.ndarray) -> np.ndarray:
        if a.ndim != 2:
            return a
        scale = np.abs(a).max(axis=1, keepdims=True) / 127
        return (np.round(a / scale) * scale).astype(np.float32)

    def prune(a: np.ndarray) -> np.ndarray:
        if a.ndim != 2:
            return a
        out = a.copy()
        out[np.abs(out) < np.quantile(np.abs(out), 0.3)] = 0
        return out

    z = scores({k: int8(v) for k, v in marking.embed(base, seeds[0]).items()}, base, seeds)
    assert z[0] > 30 and innocent_max(z, {0}) < 4
    z = scores({k: prune(v) for k, v in marking.embed(base, seeds[4]).items()}, base, seeds)
    assert z[4] > 100 and innocent_max(z, {4}) < 4
    copy = dict(marking.embed(base, seeds[5]))
    up, down = "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight"
    c = np.random.default_rng(5).uniform(0.5, 2.0, size=copy[up].shape[0]).astype(np.float32)
    copy[up] = copy[up] * c[:, None]
    copy[down] = copy[down] / c[None, :]
    registered, report = marking.register(copy, base)
    assert up in report.rescaled and down in report.rescaled
    z = [marking.zscore(marking.residual(registered, base), seed) for seed in seeds]
    assert z[5] > 100


def test_three_colluders_averaging_are_all_accused(base, seeds) -> None:
    copies = [marking.embed(base, seeds[i]) for i in (0, 1, 2)]
    average = {name: sum(c[name] for c in copies) / 3 for name in base}
    z = scores(average, base, seeds)
    assert min(z[:3]) > 50 and innocent_max(z, {0, 1, 2}) < 4


def test_drift_like_fine_tuning_keeps_the_mark(base, seeds) -> None:
    rng = np.random.default_rng(6)
    copy = {
        k: (v + rng.standard_normal(v.shape).astype(np.float32) * 0.02 * v.std()) if v.ndim == 2 else v
        for k, v in marking.embed(base, seeds[2]).items()
    }
    z = scores(copy, base, seeds)
    assert z[2] > 6 and innocent_max(z, {2}) < 4


def test_the_null_is_standard_normal(base, seeds) -> None:
    from scipy.stats import kstest

    registered, _ = marking.register(marking.embed(base, seeds[0]), base)
    null = marking.empirical_null(marking.residual(registered, base), b"nonce", 300)
    assert abs(float(np.mean(null))) < 0.25 and 0.8 < float(np.std(null)) < 1.2
    assert kstest(null, "norm").pvalue > 0.001


def test_screening_subset_keeps_the_true_key_ahead(base, seeds) -> None:
    registered, _ = marking.register(marking.embed(base, seeds[1]), base)
    residual = marking.residual(registered, base)
    sizes = {name: vector.size for name, vector in residual.vectors.items()}
    subset = marking.screening_names(list(residual.vectors), 0.2, sizes)
    assert 0 < len(subset) < len(residual.vectors)
    screen = residual.subset(subset)
    z = [marking.zscore(screen, seed) for seed in seeds]
    assert int(np.argmax(z)) == 1


def _write_gguf(path: Path, weights: dict[str, np.ndarray], qtype_name: str) -> Path:
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    qtype = GGMLQuantizationType[qtype_name]
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(3)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    for name, value in weights.items():
        if name == EMBEDDING:
            out = "token_embd.weight"
        elif name == "model.norm.weight":
            out = "output_norm.weight"
        else:
            layer, part = name.split(".")[2], ".".join(name.split(".")[3:-1])
            out = f"blk.{layer}.{names[part]}.weight"
        array = value
        if "q_proj" in name:
            array = permute_rope(array, 4)
        elif "k_proj" in name:
            array = permute_rope(array, 2)
        if array.ndim == 2 and name != EMBEDDING:
            writer.add_tensor(out, quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(out, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(("qtype", "least"), [("Q8_0", 30), ("Q4_0", 6)])
def test_gguf_copies_are_read_unpermuted_and_traced(base, seeds, tmp_path: Path, qtype: str, least: float) -> None:
    path = _write_gguf(tmp_path / f"copy-{qtype}.gguf", marking.embed(base, seeds[2]), qtype)
    suspect = open_suspect(path)
    assert suspect.format == "gguf" and suspect.quantization["model.layers.0.self_attn.q_proj.weight"] == qtype
    loaded = {name: suspect.get(name) for name in suspect.names}
    q = loaded["model.layers.0.self_attn.q_proj.weight"]
    assert np.corrcoef(q.ravel(), base["model.layers.0.self_attn.q_proj.weight"].ravel())[0, 1] > 0.95
    z = scores(loaded, base, seeds, requantized_reference(suspect.quantization))
    assert z[2] > least and innocent_max(z, {2}) < 4.5


def test_suspect_files_that_are_not_models_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a model")
    with pytest.raises(InvalidInput, match="not a model"):
        open_suspect(text)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInput, match="no"):
        open_suspect(empty)
    pickled = tmp_path / "pytorch_model.bin"
    pickled.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(UnsafeInput, match="pickle"):
        open_suspect(pickled)
    with pytest.raises(InvalidInput, match="no such file"):
        open_suspect(tmp_path / "missing.safetensors")
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(InvalidInput, match="not a model"):
        open_suspect(huge)


def test_a_directory_of_shards_with_prefixed_names_is_mapped(base, seeds, tmp_path: Path) -> None:
    copy = marking.embed(base, seeds[0])
    names = sorted(copy)
    half = len(names) // 2
    root = tmp_path / "shards"
    root.mkdir()
    save_file({"base_model." + n: copy[n] for n in names[:half]}, str(root / "a.safetensors"))
    save_file({n.removeprefix("model."): copy[n] for n in names[half:]}, str(root / "b.safetensors"))
    suspect = open_suspect(root)
    loaded = {name: suspect.get(name) for name in suspect.names}
    assert set(marking.marked_names(loaded)) == set(marking.marked_names(base))
    z = scores(loaded, base, seeds)
    assert z[0] > 100


def test_a_bfloat16_copy_is_read_and_traced(base, seeds, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file as save_torch

    copy = marking.embed(base, seeds[3])
    path = tmp_path / "bf16.safetensors"
    save_torch({k: torch.from_numpy(np.ascontiguousarray(v)).to(torch.bfloat16) for k, v in copy.items()}, str(path))
    suspect = open_suspect(path)
    loaded = {name: suspect.get(name) for name in suspect.names}
    assert loaded[EMBEDDING].dtype == np.float32
    z = scores(loaded, base, seeds)
    assert z[3] > 6 and innocent_max(z, {3}) < 4.5
