"""Pure rules and bounded header parsers of the registry."""

from __future__ import annotations

import contextlib
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from aperture.core.errors import ApertureError, InvalidInput, TooLarge, UnsafeInput
from aperture.registry.domain import (
    GGML_TYPES,
    HeaderLimits,
    Modality,
    WeightFormat,
    check_relative_path,
    classify,
    decide_lineage,
    derive_facts,
    is_pickle_name,
    looks_like_pickle,
    parse_gguf,
    parse_modalities,
    parse_model_config,
    parse_safetensors,
    parse_safetensors_index,
    parse_training_flop,
    validate_licence,
    validate_name,
    validate_version,
)
from tests.registry.builders import raw_safetensors, write_gguf, write_hf_directory, write_safetensors


def _parse_st(data: bytes, limits: HeaderLimits | None = None) -> object:
    return parse_safetensors(io.BytesIO(data), len(data), limits or HeaderLimits())


def _parse_gguf(data: bytes, limits: HeaderLimits | None = None) -> object:
    return parse_gguf(io.BytesIO(data), len(data), limits or HeaderLimits())


# --- safetensors ------------------------------------------------------------------------


def test_safetensors_header_agrees_with_the_reference_reader(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors")
    with path.open("rb") as handle:
        info = parse_safetensors(handle, path.stat().st_size)
    assert info.format is WeightFormat.SAFETENSORS
    assert info.parameter_count == 32 + 4
    assert info.dtypes == ("F16", "F32")
    with safe_open(str(path), "np") as reference:
        assert {t.name for t in info.tensors} == set(reference.keys())
        for tensor in info.tensors:
            assert tensor.shape == tuple(reference.get_slice(tensor.name).get_shape())


def test_safetensors_header_length_above_100_mb_is_refused() -> None:
    data = struct.pack("<Q", 100_000_001) + b"{}"
    with pytest.raises(TooLarge) as caught:
        _parse_st(data)
    assert "100000000" in caught.value.message


def test_safetensors_header_claiming_100_gb_is_refused_before_reading() -> None:
    data = struct.pack("<Q", 100 * 1024**3) + b"{" + b" " * 100
    with pytest.raises(TooLarge):
        _parse_st(data)


def test_safetensors_header_longer_than_the_file_is_truncated() -> None:
    data = raw_safetensors({}, b"", length=4096)
    with pytest.raises(InvalidInput, match="truncated"):
        _parse_st(data)


def test_tensor_data_beyond_the_end_of_the_file_is_truncated(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "m.safetensors")
    data = path.read_bytes()[:-10]
    with pytest.raises(InvalidInput, match="truncated"):
        _parse_st(data)


def test_a_tensor_claiming_100_gb_does_not_fit_the_file() -> None:
    header = {"huge": {"dtype": "F32", "shape": [25 * 1024**3], "data_offsets": [0, 100 * 1024**3]}}
    with pytest.raises(InvalidInput, match="truncated"):
        _parse_st(raw_safetensors(header, b"\0" * 16))


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, "does not fit"),
        ({"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "malformed shape"),
        (
            {
                "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
            },
            b"\0" * 12,
            "hole",
        ),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            b"\0" * 8,
            "overlaps",
        ),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9, "not described"),
        ({"__metadata__": {"k": 1}}, b"", "__metadata__"),
    ],
)
def test_inconsistent_safetensors_headers_are_refused(header: dict[str, object], data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        _parse_st(raw_safetensors(header, data))


def test_safetensors_header_that_is_not_json_or_has_duplicate_keys_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not valid JSON"):
        _parse_st(struct.pack("<Q", 5) + b"{nope")
    body = b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {}}'
    with pytest.raises(InvalidInput, match="duplicate"):
        _parse_st(struct.pack("<Q", len(body)) + body + b"\0")


def test_deeply_nested_safetensors_header_is_refused() -> None:
    body = b"{" + b'"a":[' * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidInput):
        _parse_st(struct.pack("<Q", len(body)) + body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_safetensors_parser(data: bytes) -> None:
    with contextlib.suppress(ApertureError):
        _parse_st(data)


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=10_000), value=st.integers(min_value=0, max_value=255))
def test_corrupting_one_byte_of_a_safetensors_header_fails_cleanly(position: int, value: int) -> None:
    header = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "__metadata__": {"format": "pt"}}
    data = bytearray(raw_safetensors(header, bytes(range(16))))
    data[position % len(data)] = value
    with contextlib.suppress(ApertureError):
        _parse_st(bytes(data))


# --- GGUF -------------------------------------------------------------------------------


def test_gguf_header_agrees_with_the_gguf_package(tmp_path: Path) -> None:
    from gguf import GGUFReader

    path = write_gguf(tmp_path / "m.gguf")
    with path.open("rb") as handle:
        info = parse_gguf(handle, path.stat().st_size)
    assert info.architecture == "llama"
    assert info.metadata["tokenizer.ggml.tokens"] == "[4 items]"
    reference = GGUFReader(str(path))
    assert info.tensor_count == len(reference.tensors)
    assert info.parameter_count == sum(int(t.n_elements) for t in reference.tensors)
    by_name = {t.name: t for t in info.tensors}
    for tensor in reference.tensors:
        assert info.data_start + by_name[tensor.name].start == tensor.data_offset
        assert by_name[tensor.name].end - by_name[tensor.name].start == tensor.n_bytes


def test_the_ggml_type_table_matches_the_gguf_package() -> None:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    for type_id, (name, block, size) in GGML_TYPES.items():
        quant = GGMLQuantizationType(type_id)
        assert quant.name == name
        assert GGML_QUANT_SIZES[quant] == (block, size)


def _gguf_prefix(version: int = 3, tensors: int = 0, kvs: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def _gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"GGML" + b"\0" * 20, InvalidInput, "magic"),
        (_gguf_prefix(version=1), InvalidInput, "version 1"),
        (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), InvalidInput, "big-endian"),
        (_gguf_prefix(tensors=1 << 40), TooLarge, "tensors"),
        (_gguf_prefix(kvs=1 << 40), TooLarge, "metadata entries"),
        (_gguf_prefix(kvs=1) + struct.pack("<Q", 1 << 40), TooLarge, "string"),
        (
            _gguf_prefix(kvs=1) + _gguf_string(b"k") + struct.pack("<IIQ", 9, 4, 1 << 40),
            TooLarge,
            "array",
        ),
        (_gguf_prefix(kvs=1) + _gguf_string(b"k") + struct.pack("<I", 99), InvalidInput, "value type"),
        (_gguf_prefix(kvs=2), InvalidInput, "truncated"),
        (
            _gguf_prefix(tensors=1) + _gguf_string(b"t") + struct.pack("<IQIQ", 1, 32, 0, 0),
            InvalidInput,
            "truncated",
        ),
        (
            _gguf_prefix(tensors=1) + _gguf_string(b"t") + struct.pack("<IQIQ", 1, 32, 77, 0),
            InvalidInput,
            "unknown ggml type",
        ),
        (
            _gguf_prefix(tensors=1) + _gguf_string(b"t") + struct.pack("<IQIQ", 1, 32, 0, 3) + b"\0" * 200,
            InvalidInput,
            "aligned",
        ),
        (
            _gguf_prefix(tensors=1) + _gguf_string(b"t") + struct.pack("<IQIQ", 1, 7, 2, 0) + b"\0" * 200,
            InvalidInput,
            "blocks",
        ),
    ],
)
def test_hostile_or_broken_gguf_headers_are_refused(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        _parse_gguf(data)


def test_truncated_gguf_file_is_refused(tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "m.gguf").read_bytes()
    with pytest.raises(InvalidInput, match="truncated"):
        _parse_gguf(data[:-20])
    with pytest.raises(InvalidInput, match="truncated"):
        _parse_gguf(data[:100])


def test_gguf_metadata_budget_bounds_what_is_read(tmp_path: Path) -> None:
    data = write_gguf(tmp_path / "m.gguf").read_bytes()
    with pytest.raises(TooLarge):
        _parse_gguf(data, HeaderLimits(gguf_metadata_bytes=64))


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0, max_value=2_000), value=st.integers(min_value=0, max_value=255))
def test_corrupting_one_byte_of_a_gguf_header_fails_cleanly(position: int, value: int) -> None:
    data = bytearray(_GGUF_SAMPLE)
    data[position % 384] = value
    with contextlib.suppress(ApertureError):
        _parse_gguf(bytes(data))


def _sample_gguf() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        return write_gguf(Path(directory) / "m.gguf").read_bytes()


_GGUF_SAMPLE = _sample_gguf()


# --- directories, facts and names -------------------------------------------------------


def test_sharded_directory_facts_follow_the_index(tmp_path: Path) -> None:
    root = write_hf_directory(tmp_path / "m", sharded=True)
    weights = {}
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        with (root / name).open("rb") as handle:
            weights[name] = parse_safetensors(handle, (root / name).stat().st_size)
    index = parse_safetensors_index((root / "model.safetensors.index.json").read_bytes(), "index")
    config = parse_model_config((root / "config.json").read_bytes())
    facts = derive_facts(weights, config=config, indexes={"model.safetensors.index.json": index})
    assert facts.parameter_count == 48 + 4 + 48
    assert facts.architecture == "LlamaForCausalLM"
    assert facts.model_type == "llama"
    assert facts.weight_files == tuple(sorted(weights))


def test_an_index_naming_a_missing_shard_or_tensor_is_refused(tmp_path: Path) -> None:
    root = write_hf_directory(tmp_path / "m", sharded=True)
    path = root / "model-00001-of-00002.safetensors"
    with path.open("rb") as handle:
        weights = {path.name: parse_safetensors(handle, path.stat().st_size)}
    index = parse_safetensors_index((root / "model.safetensors.index.json").read_bytes(), "index")
    with pytest.raises(InvalidInput, match="not in the directory"):
        derive_facts(weights, indexes={"model.safetensors.index.json": index})
    wrong = {"model.other": "model-00001-of-00002.safetensors"}
    with pytest.raises(InvalidInput, match="does not hold it"):
        derive_facts(weights, indexes={"model.safetensors.index.json": wrong})


def test_an_index_cannot_point_outside_the_directory() -> None:
    data = json.dumps({"weight_map": {"a": "../../etc/passwd"}}).encode()
    with pytest.raises(UnsafeInput):
        parse_safetensors_index(data, "index")


def test_no_weights_means_no_model() -> None:
    with pytest.raises(InvalidInput, match="no model weights"):
        derive_facts({})


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../b", "a//b", "a/./b", "a\\b", "a\nb", "", "x" * 1001])
def test_paths_that_could_leave_the_model_are_refused(path: str) -> None:
    with pytest.raises(UnsafeInput):
        check_relative_path(path)


def test_file_kinds_and_pickles() -> None:
    assert classify("model-00001-of-00002.safetensors").value == "weights"
    assert classify("model.safetensors.index.json").value == "index"
    assert classify("tokenizer.json").value == "tokenizer"
    assert classify("README.md").value == "documentation"
    assert classify("config.json").value == "config"
    for name in ("pytorch_model.bin", "model.pt", "x.pth", "a.pkl", "b.ckpt", "training_args.bin"):
        assert is_pickle_name(name)
    assert not is_pickle_name("model.safetensors")
    assert looks_like_pickle(b"\x80\x04") and not looks_like_pickle(b"{\n")


@pytest.mark.parametrize(
    "licence",
    [
        "Apache-2.0",
        "MIT",
        "CC-BY-4.0",
        "GPL-2.0+",
        "LicenseRef-Proprietary",
        "MIT OR Apache-2.0",
        "(MIT AND BSD-3-Clause) OR Apache-2.0",
        "GPL-2.0-only WITH Classpath-exception-2.0",
    ],
)
def test_spdx_licence_shapes_are_accepted(licence: str) -> None:
    assert validate_licence(licence)


@pytest.mark.parametrize("licence", ["", "apache 2", "MIT OR", "(MIT", "MIT)", "AND MIT", "GPL 2.0", "MIT;rm", "a b c"])
def test_malformed_licences_are_refused_with_a_hint(licence: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_licence(licence)
    assert "SPDX" in caught.value.hint


def test_training_compute_is_an_exact_integer() -> None:
    assert parse_training_flop("3.2e21") == 3_200_000_000_000_000_000_000
    assert parse_training_flop("1e25") == 10**25
    assert parse_training_flop(640) == 640
    for bad in ("abc", "-1", "0", "1.5", "nan", "inf", "1e41"):
        with pytest.raises(InvalidInput):
            parse_training_flop(bad)


def test_modalities_names_and_versions() -> None:
    assert parse_modalities(["text,code", "Image", "text"]) == (Modality.TEXT, Modality.CODE, Modality.IMAGE)
    with pytest.raises(InvalidInput, match="unknown modality"):
        parse_modalities(["smell"])
    validate_name("smollm2-135m-instruct")
    validate_version("1.0.0+local")
    for bad in ("", "a:b", "a/b", "-x", "x" * 101):
        with pytest.raises(InvalidInput):
            validate_name(bad)
    with pytest.raises(InvalidInput):
        validate_version("1:0")


def test_lineage_is_registered_or_external() -> None:
    registered = decide_lineage("base:1.0", None)
    assert not registered.external and registered.registered_base == ("base", "1.0")
    external = decide_lineage("HuggingFaceTB/SmolLM2-135M", "Apache-2.0")
    assert external.external and external.base_licence == "Apache-2.0" and external.registered_base is None
    with pytest.raises(InvalidInput, match="only for external"):
        decide_lineage("base:1.0", "MIT")
    with pytest.raises(InvalidInput, match="needs --base-model"):
        decide_lineage(None, "MIT")
    with pytest.raises(InvalidInput, match="malformed licence"):
        decide_lineage("org/model", "not a licence")


def test_numpy_builders_are_what_they_claim(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "x.safetensors", {"t": np.zeros((3, 5), np.int8)})
    with path.open("rb") as handle:
        info = parse_safetensors(handle, path.stat().st_size)
    assert info.parameter_count == 15 and info.dtypes == ("I8",)


@pytest.mark.parametrize("text", ["model\n", "model\n:1.0"])
def test_names_versions_and_references_refuse_a_trailing_newline(text: str) -> None:
    from aperture.registry.domain import parse_reference, validate_name

    with pytest.raises(InvalidInput):
        if ":" in text:
            parse_reference(text)
        else:
            validate_name(text)
