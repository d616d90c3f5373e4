"""Reading and writing weights for marking and tracing: safetensors and GGUF, untrusted input
parsed safely (no pickle formats, bounded headers), tensor names mapped to Hugging Face Llama names.

Why our own safetensors writer: a marked copy of an upper-tier model must never lie unencrypted
on disk, so it is produced as a stream of byte chunks (header, then each tensor's bytes) that the
vault seals as they come; the safetensors library only writes whole files or whole byte strings
(a second copy of the model in memory). The format is a u64 header length, a JSON header and the
tensors' bytes: https://github.com/huggingface/safetensors#format.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aperture.core.errors import InvalidInput, UnsafeInput

MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
EMBEDDING = "model.embed_tokens.weight"

_NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "BOOL": np.dtype("?"),
}
_SAFETENSORS_NAMES = {dtype.str: name for name, dtype in _NUMPY_DTYPES.items()}
_SAFETENSORS_NAMES["|i1"] = "I8"
_SAFETENSORS_NAMES["|u1"] = "U8"
_SAFETENSORS_NAMES["|b1"] = "BOOL"

_GGUF_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_GGUF_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_HF_LAYER = re.compile(r"(?:^|\.)(layers\.\d+\..+)$")


def canonical_name(name: str) -> str:
    """Map a tensor name from Hugging Face (with or without a prefix) or GGUF to `model.layers...`."""
    match = _GGUF_BLOCK.match(name)
    if match:
        layer, part, kind = match.groups()
        return f"model.layers.{layer}.{_GGUF_NAMES.get(part, part)}.{kind}"
    if name == "token_embd.weight" or name.endswith("embed_tokens.weight"):
        return EMBEDDING
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    layer = _HF_LAYER.search(name)
    if layer:
        return "model." + layer.group(1)
    return name


@dataclass
class SuspectWeights:
    """A suspect's tensors, by canonical name, read on demand (one tensor in memory at a time)."""

    path: Path
    format: str  # safetensors | gguf
    names: list[str]
    loader: Any  # callable: canonical name -> float32 array
    quantization: dict[str, str] = field(default_factory=dict)  # canonical name -> GGUF type name
    files: list[Path] = field(default_factory=list)

    def get(self, name: str) -> np.ndarray | None:
        return self.loader(name) if name in self.names else None


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeInput(
            f"{path.name} is a pickle-based checkpoint, which is never opened here",
            hint="convert it to safetensors or GGUF first (pickle files can run code when loaded)",
        )


SUSPECT_HINT = "give a safetensors file, a directory of *.safetensors shards, or a GGUF file"


def open_suspect(path: Path) -> SuspectWeights:
    """Open a suspect model for tracing: a safetensors file, a directory of shards, or a GGUF file."""
    if not path.exists():
        raise InvalidInput(f"no such file or directory: {path}", hint=SUSPECT_HINT)
    if path.is_dir():
        shards = sorted(p for p in path.iterdir() if p.suffix == ".safetensors" and p.is_file())
        if not shards:
            pickles = [p for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
            if pickles:
                _refuse_pickle(pickles[0])
            ggufs = sorted(path.glob("*.gguf"))
            if ggufs:
                return _open_gguf(ggufs[0])
            raise InvalidInput(f"{path} holds no *.safetensors or *.gguf file", hint=SUSPECT_HINT)
        return _open_safetensors(path, shards)
    _refuse_pickle(path)
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic == b"GGUF":
        return _open_gguf(path)
    return _open_safetensors(path, [path])


def _read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """(data offset, header) of a safetensors file, every tensor's offsets checked against the file."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise InvalidInput(f"{path.name} is not a model: too short for safetensors", hint=SUSPECT_HINT)
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER or length + 8 > size:
            raise InvalidInput(f"{path.name} is not a model: no safetensors header", hint=SUSPECT_HINT)
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput(
            f"{path.name} is not a model: its safetensors header is not JSON", hint=SUSPECT_HINT
        ) from None
    if not isinstance(header, dict):
        raise InvalidInput(f"{path.name} is not a model: its safetensors header is not a table", hint=SUSPECT_HINT)
    header.pop("__metadata__", None)
    data = 8 + length
    for name, entry in header.items():
        try:
            start, end = (int(x) for x in entry["data_offsets"])
            count = int(np.prod([int(n) for n in entry["shape"]])) if entry["shape"] else 1
            width = _READ_DTYPES[entry["dtype"]][1]
        except (KeyError, TypeError, ValueError):
            raise InvalidInput(
                f"{path.name}: tensor {name} has an unreadable entry or dtype", hint=SUSPECT_HINT
            ) from None
        if not 0 <= start <= end <= size - data or end - start != count * width:
            raise InvalidInput(f"{path.name}: tensor {name} lies outside the file", hint="the file is damaged")
    return data, header


# safetensors dtype -> (numpy dtype to read, bytes per element); BF16 is widened by a bit shift.
_READ_DTYPES: dict[str, tuple[str, int]] = {
    "F32": ("<f4", 4),
    "F16": ("<f2", 2),
    "BF16": ("<u2", 2),
    "F64": ("<f8", 8),
    "I8": ("i1", 1),
    "U8": ("u1", 1),
    "I16": ("<i2", 2),
    "I32": ("<i4", 4),
    "I64": ("<i8", 8),
}


def _open_safetensors(path: Path, shards: list[Path]) -> SuspectWeights:
    """Our own reader: each tensor is read with pread into its own array (no memory map, so
    tracing's memory holds only the tensor being registered), after every offset was checked."""
    where: dict[str, tuple[Path, int, dict[str, Any]]] = {}
    for shard in shards:
        data, header = _read_header(shard)
        for name, entry in header.items():
            where[canonical_name(name)] = (shard, data, entry)
    if not where:
        raise InvalidInput(f"{path.name} holds no tensors", hint=SUSPECT_HINT)

    def load(name: str) -> np.ndarray:
        shard, data, entry = where[name]
        start, end = (int(x) for x in entry["data_offsets"])
        kind, _ = _READ_DTYPES[entry["dtype"]]
        buffer = bytearray(end - start)
        with shard.open("rb") as handle:
            handle.seek(data + start)
            if handle.readinto(buffer) != len(buffer):
                raise InvalidInput(f"{shard.name}: tensor {name} is truncated", hint="the file is damaged")
        raw = np.frombuffer(buffer, dtype=kind)
        if entry["dtype"] == "BF16":
            widened = raw.astype(np.uint32) << 16
            array = widened.view(np.float32)
        else:
            array = raw.astype(np.float32)
        return array.reshape(tuple(int(n) for n in entry["shape"]))

    return SuspectWeights(path, "safetensors", sorted(where), load, files=shards)


def _open_gguf(path: Path) -> SuspectWeights:
    try:
        from gguf import GGMLQuantizationType, GGUFReader
        from gguf.quants import dequantize
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise InvalidInput(f"GGUF support is missing: {error}", hint="reinstall aperture's dependencies") from None
    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError, struct.error, IndexError) as error:
        raise InvalidInput(f"{path.name} is not a readable GGUF file: {error}", hint=SUSPECT_HINT) from None
    heads = _gguf_int(reader, "attention.head_count")
    kv_heads = _gguf_int(reader, "attention.head_count_kv") or heads
    tensors = {canonical_name(tensor.name): tensor for tensor in reader.tensors}
    quantization = {
        name: tensor.tensor_type.name
        for name, tensor in tensors.items()
        if tensor.tensor_type not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16)
    }

    def load(name: str) -> np.ndarray:
        tensor = tensors[name]
        try:
            array = dequantize(tensor.data, tensor.tensor_type)
        except NotImplementedError:
            raise InvalidInput(
                f"{path.name}: tensor {tensor.name} uses {tensor.tensor_type.name}, which cannot be dequantized here",
                hint="convert the file to safetensors or to a GGUF type the gguf package reads (Q4_0, Q8_0, K-quants)",
            ) from None
        shape = tuple(int(n) for n in reversed(tensor.shape))
        array = np.asarray(array, dtype=np.float32).reshape(shape)
        # llama.cpp's converter permutes q and k rows for its RoPE layout; undo it exactly.
        if heads and name.endswith("self_attn.q_proj.weight"):
            array = _unpermute_rope(array, heads)
        elif kv_heads and name.endswith("self_attn.k_proj.weight"):
            array = _unpermute_rope(array, kv_heads)
        return array

    return SuspectWeights(path, "gguf", sorted(tensors), load, quantization, [path])


def _gguf_int(reader: Any, suffix: str) -> int | None:
    for key, value in reader.fields.items():
        if key.endswith("." + suffix) and value.data:
            return int(value.parts[value.data[0]][0])
    return None


def _unpermute_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    rows = weight.shape[0]
    if rows % (2 * heads):
        return weight
    return weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def permute_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's permutation of q/k rows (what its converter writes into a GGUF file)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def requantized_reference(quantization: Mapping[str, str]) -> Any:
    """The reference Q(W0) for tensors the suspect holds in a GGUF quantized type (A.5.1 step 3)."""
    if not quantization:
        return None
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    def reference(name: str, original: np.ndarray) -> np.ndarray:
        kind = quantization.get(name)
        if kind is None:
            return original
        qtype = GGMLQuantizationType[kind]
        try:
            return np.asarray(dequantize(quantize(original, qtype), qtype), dtype=np.float32).reshape(original.shape)
        except (NotImplementedError, ValueError):
            return original

    return reference


# --- safetensors in memory and as a stream ----------------------------------------------------


def parse_safetensors(buffer: bytearray | memoryview) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Zero-copy numpy views over a safetensors file held in memory (writable when the buffer is).
    Only the dtypes numpy has; BF16 is refused with a hint. Checks every offset."""
    view = memoryview(buffer)
    if len(view) < 8:
        raise InvalidInput("not a safetensors file: too short", hint=SUSPECT_HINT)
    (length,) = struct.unpack("<Q", view[:8])
    if length > MAX_HEADER or 8 + length > len(view):
        raise InvalidInput("not a safetensors file: bad header length", hint=SUSPECT_HINT)
    try:
        header = json.loads(bytes(view[8 : 8 + length]))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("not a safetensors file: the header is not JSON", hint=SUSPECT_HINT) from None
    metadata = header.pop("__metadata__", None) or {}
    data = view[8 + length :]
    arrays: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        dtype = _NUMPY_DTYPES.get(entry.get("dtype", ""))
        if dtype is None:
            raise InvalidInput(
                f"tensor {name} has dtype {entry.get('dtype')}, which marking does not support",
                hint="register the model in float32 or float16",
            )
        start, end = (int(x) for x in entry["data_offsets"])
        shape = tuple(int(n) for n in entry["shape"])
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= start <= end <= len(data) or end - start != count * dtype.itemsize:
            raise InvalidInput(f"tensor {name} lies outside the file", hint="the file is damaged")
        arrays[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(shape)
    return arrays, {str(k): str(v) for k, v in metadata.items()}


def safetensors_stream(
    arrays: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
    transform: Callable[[str, np.ndarray], np.ndarray] | None = None,
) -> tuple[int, Iterator[memoryview]]:
    """(total size, chunks) of a safetensors file for `arrays`, tensors in name order, without
    building the file in memory; `transform` (same shape and dtype) is applied one tensor at a
    time as the stream is read."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    names = sorted(arrays)
    for name in names:
        array = arrays[name]
        dtype_name = _SAFETENSORS_NAMES.get(array.dtype.str)
        if dtype_name is None:
            raise InvalidInput(f"tensor {name} has an unsupported dtype {array.dtype}", hint="use float32 or float16")
        header[name] = {
            "dtype": dtype_name,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * ((-len(encoded)) % 8)  # the data starts 8-byte aligned
    total = 8 + len(encoded) + offset

    def chunks() -> Iterator[memoryview]:
        yield memoryview(struct.pack("<Q", len(encoded)) + encoded)
        for name in names:
            array = arrays[name] if transform is None else transform(name, arrays[name])
            yield np.ascontiguousarray(array).reshape(-1).view(np.uint8).data

    return total, chunks()


def iter_safetensors(chunks: Iterable[bytes]) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) for each tensor of a safetensors byte stream, in file order, holding one
    tensor in memory at a time (reading back a sealed copy for its self-test). Each tensor's bytes
    are copied once, straight from the chunks into a buffer of its exact size."""
    source = iter(chunks)
    current = memoryview(b"")

    def fill(target: memoryview) -> None:
        nonlocal current
        done = 0
        while done < len(target):
            if not current:
                try:
                    current = memoryview(next(source)).cast("B")
                except StopIteration:
                    raise InvalidInput("the safetensors stream ended early", hint="the copy is damaged") from None
            take = min(len(current), len(target) - done)
            target[done : done + take] = current[:take]
            current = current[take:]
            done += take

    head = bytearray(8)
    fill(memoryview(head))
    (length,) = struct.unpack("<Q", head)
    if length > MAX_HEADER:
        raise InvalidInput("not a safetensors stream: bad header length", hint="the copy is damaged")
    header_bytes = bytearray(length)
    fill(memoryview(header_bytes))
    header = json.loads(header_bytes)
    header.pop("__metadata__", None)
    entries = sorted(header.items(), key=lambda item: int(item[1]["data_offsets"][0]))
    position = 0
    for name, entry in entries:
        dtype = _NUMPY_DTYPES.get(entry["dtype"])
        start, end = (int(x) for x in entry["data_offsets"])
        if dtype is None or start != position:
            raise InvalidInput(f"tensor {name} cannot be read back", hint="the copy is damaged")
        data = bytearray(end - start)
        fill(memoryview(data))
        position = end
        yield name, np.frombuffer(data, dtype=dtype).reshape(tuple(int(n) for n in entry["shape"]))
