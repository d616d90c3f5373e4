"""R1 model registry: names, facts, lineage, and bounded parsers for weight-file headers.

Pure: no file system, no database, no clock. The parsers read from a `Reader` the caller opens
(any object with `read(n) -> bytes`) and never read more than the explicit `HeaderLimits`; every
offset and shape is checked against the file size the caller reports, so a truncated or lying
file is an error, never a crash or an unbounded allocation. Nothing here unpickles.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Protocol

from aperture.access.domain import SecurityLevel
from aperture.core.errors import IntegrityFailure, InvalidInput, TooLarge, UnsafeInput

SCHEMA_VERSION = 1


class Reader(Protocol):
    """Where header bytes come from: an open binary file, an `io.BytesIO` ..."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Upper bounds on what a header may claim before anything is allocated for it."""

    # The safetensors reference implementation refuses headers above 100 MB; so do we.
    safetensors_header_bytes: int = 100_000_000
    json_document_bytes: int = 16 * 1024 * 1024  # config.json, index files
    json_depth: int = 64
    gguf_metadata_bytes: int = 256 * 1024 * 1024  # everything before the tensor data
    gguf_kv_count: int = 65_536
    gguf_tensor_count: int = 1_048_576
    gguf_string_bytes: int = 16 * 1024 * 1024
    gguf_array_items: int = 16 * 1024 * 1024
    gguf_dims: int = 8
    tensor_dims: int = 32
    tensor_elements: int = 1 << 50
    files_per_model: int = 10_000
    path_chars: int = 1_000
    path_depth: int = 32


DEFAULT_LIMITS = HeaderLimits()


# --- names, versions and facts ----------------------------------------------------------

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
# An SPDX short identifier (e.g. Apache-2.0, MIT, CC-BY-4.0) or a LicenseRef-/DocumentRef- one.
SPDX_ID_PATTERN = re.compile(
    r"^(?:(?:DocumentRef-[A-Za-z0-9.-]+:)?LicenseRef-[A-Za-z0-9.-]+|[A-Za-z0-9][A-Za-z0-9.-]*\+?)$"
)
SPDX_OPERATORS = frozenset({"AND", "OR", "WITH"})
MAX_TEXT = 10_000
MAX_FLOP = 10**40


class Modality(StrEnum):
    TEXT = "text"
    CODE = "code"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    TABULAR = "tabular"
    BIOLOGICAL = "biological"
    OTHER = "other"


def validate_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid model name {name!r}",
            hint="use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit (no ':' or '/')",
        )
    return name


def validate_version(version: str) -> str:
    if not VERSION_PATTERN.fullmatch(version):
        raise InvalidInput(
            f"invalid version {version!r}",
            hint="use 1-64 letters, digits, '.', '_', '+' or '-', starting with a letter or digit (e.g. 1.0.0)",
        )
    return version


def parse_reference(text: str) -> tuple[str, str]:
    """`name:version` -> (name, version)."""
    name, sep, version = text.strip().partition(":")
    if not sep or not NAME_PATTERN.fullmatch(name) or not VERSION_PATTERN.fullmatch(version):
        raise InvalidInput(
            f"{text!r} is not a model reference",
            hint="write NAME:VERSION, e.g. smollm2-135m-instruct:0.1.2 (`aperture models list` shows them)",
        )
    return name, version


def looks_like_reference(text: str) -> bool:
    name, sep, version = text.strip().partition(":")
    return bool(sep) and bool(NAME_PATTERN.fullmatch(name)) and bool(VERSION_PATTERN.fullmatch(version))


def validate_licence(text: str) -> str:
    """Check the shape of an SPDX licence expression: identifiers joined by AND/OR/WITH, parentheses."""
    expression = text.strip()
    hint = (
        "give an SPDX identifier such as Apache-2.0, MIT, CC-BY-4.0 or LicenseRef-Proprietary "
        "(expressions like 'MIT OR Apache-2.0' are accepted); see https://spdx.org/licenses/"
    )
    if not expression or len(expression) > 500:
        raise InvalidInput(f"malformed licence {text!r}", hint=hint)
    tokens = re.findall(r"\(|\)|[^\s()]+", expression)
    depth = 0
    expect_id = True
    for part in tokens:
        if part == "(":
            if not expect_id:
                raise InvalidInput(f"malformed licence {text!r}: unexpected '('", hint=hint)
            depth += 1
        elif part == ")":
            depth -= 1
            if depth < 0 or expect_id:
                raise InvalidInput(f"malformed licence {text!r}: unbalanced ')'", hint=hint)
        elif part in SPDX_OPERATORS:
            if expect_id:
                raise InvalidInput(f"malformed licence {text!r}: operator {part} without a licence", hint=hint)
            expect_id = True
        else:
            if not expect_id or not SPDX_ID_PATTERN.match(part):
                raise InvalidInput(f"malformed licence {text!r}: {part!r} is not an SPDX identifier", hint=hint)
            expect_id = False
    if expect_id or depth != 0:
        raise InvalidInput(f"malformed licence {text!r}: incomplete expression", hint=hint)
    return " ".join(tokens).replace("( ", "(").replace(" )", ")")


def parse_training_flop(text: str | int) -> int:
    """Training compute in FLOP as an exact integer (`3.2e21`, `1e25`, `640000000`)."""
    try:
        value = Decimal(str(text).strip().replace("_", ""))
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0 or value != value.to_integral_value() or value > MAX_FLOP:
        raise InvalidInput(
            f"invalid training compute {text!r}",
            hint="give a positive whole number of FLOP, e.g. 3.2e21 (the EU AI Act presumption is 1e25)",
        )
    return int(value)


def parse_modalities(values: Iterable[str]) -> tuple[Modality, ...]:
    found: list[Modality] = []
    for raw in values:
        for part in raw.split(","):
            item = part.strip().lower()
            if not item:
                continue
            try:
                modality = Modality(item)
            except ValueError:
                raise InvalidInput(
                    f"unknown modality {part.strip()!r}", hint="choose from: " + ", ".join(m.value for m in Modality)
                ) from None
            if modality not in found:
                found.append(modality)
    return tuple(found)


def _bounded_text(label: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{label} is longer than {MAX_TEXT} characters", hint=f"shorten the {label}")
    return value or None


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a version comes from: a registered version (`name:version`) or an external model."""

    base_model: str | None = None  # "name:version" when registered, free text when external
    external: bool = False
    base_licence: str | None = None  # the upstream licence of an external base
    base_version_id: str | None = None  # the id of a registered base (set when the version is recorded)

    @property
    def registered_base(self) -> tuple[str, str] | None:
        if self.base_model is None or self.external:
            return None
        return parse_reference(self.base_model)


def decide_lineage(base_model: str | None, base_licence: str | None) -> Lineage:
    if base_model is None or not base_model.strip():
        if base_licence:
            raise InvalidInput("--base-licence needs --base-model", hint="name the base model the licence belongs to")
        return Lineage()
    text = base_model.strip()
    if len(text) > 300 or any(ord(ch) < 32 for ch in text):
        raise InvalidInput(f"invalid base model {base_model!r}", hint="name it as NAME:VERSION or e.g. org/model")
    if looks_like_reference(text):
        if base_licence:
            raise InvalidInput(
                "--base-licence is only for external base models",
                hint="a registered base model already records its own licence; drop --base-licence",
            )
        return Lineage(base_model=text, external=False)
    licence = validate_licence(base_licence) if base_licence else None
    return Lineage(base_model=text, external=True, base_licence=licence)


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """What the registrant declares about a version (derived facts come from the headers)."""

    licence: str | None = None
    training_flop: int | None = None
    modalities: tuple[Modality, ...] = ()
    intended_use: str | None = None
    description: str | None = None
    data_summary: str | None = None
    lineage: Lineage = field(default_factory=Lineage)


def declare_facts(
    *,
    licence: str | None = None,
    training_flop: str | int | None = None,
    modalities: Iterable[str] = (),
    intended_use: str | None = None,
    description: str | None = None,
    data_summary: str | None = None,
    base_model: str | None = None,
    base_licence: str | None = None,
) -> VersionFacts:
    return VersionFacts(
        licence=validate_licence(licence) if licence else None,
        training_flop=parse_training_flop(training_flop) if training_flop not in (None, "") else None,
        modalities=parse_modalities(modalities),
        intended_use=_bounded_text("intended use", intended_use),
        description=_bounded_text("description", description),
        data_summary=_bounded_text("data summary", data_summary),
        lineage=decide_lineage(base_model, base_licence),
    )


# --- which files a model consists of ----------------------------------------------------


class FileKind(StrEnum):
    WEIGHTS = "weights"
    INDEX = "index"
    CONFIG = "config"
    TOKENIZER = "tokenizer"
    DOCUMENTATION = "documentation"
    OTHER = "other"


class WeightFormat(StrEnum):
    SAFETENSORS = "safetensors"
    GGUF = "gguf"


PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz"})
# The signed facts document of a version: listed in its signed manifest, written on export.
FACTS_FILE = "aperture-facts.json"
# Left out at the model root: what model_signing ignores when it re-hashes (git metadata and the
# signature), and the facts document of an export registered again (each version signs its own).
SKIPPED_AT_ROOT = frozenset({".git", ".github", ".gitattributes", ".gitignore", "model.sig", FACTS_FILE})
SIGNATURE_IGNORE_PATHS = (".git", ".gitattributes", ".github", ".gitignore", "model.sig")
TOKENIZER_NAMES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "tokenizer.model",
        "added_tokens.json",
        "chat_template.jinja",
        "chat_template.json",
    }
)
CONFIG_NAMES = frozenset({"config.json", "generation_config.json", "preprocessor_config.json"})


def pickle_refusal(path: str) -> UnsafeInput:
    return UnsafeInput(
        f"{path} is a pickle file: loading it can run arbitrary code, so Aperture never stores or unpickles it",
        hint=(
            "convert the weights to safetensors in an isolated environment, e.g. "
            "`AutoModel.from_pretrained(dir).save_pretrained(out, safe_serialization=True)` or "
            "`safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors')`, "
            "then register the converted directory"
        ),
    )


def is_pickle_name(path: str) -> bool:
    return PurePosixPath(path).suffix.lower() in PICKLE_SUFFIXES


def looks_like_pickle(prefix: bytes) -> bool:
    """Pickle protocols 2-5 start with PROTO (0x80) and the protocol number."""
    return len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5


def check_relative_path(path: str, limits: HeaderLimits = DEFAULT_LIMITS) -> str:
    """A file's path inside a model: relative, POSIX, no traversal, no control characters."""
    pure = PurePosixPath(path)
    if (
        not path
        or len(path) > limits.path_chars
        or pure.is_absolute()
        or "\\" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in path)
        or len(pure.parts) > limits.path_depth
    ):
        raise UnsafeInput(
            f"refused file path {path!r}: paths must stay inside the model directory",
            hint="rename the file: no '..', no absolute paths, no control characters",
        )
    return str(pure)


def classify(path: str) -> FileKind:
    pure = PurePosixPath(path)
    name, suffix = pure.name, pure.suffix.lower()
    if suffix in (".safetensors", ".gguf"):
        return FileKind.WEIGHTS
    if name.endswith(".safetensors.index.json"):
        return FileKind.INDEX
    if name in CONFIG_NAMES:
        return FileKind.CONFIG
    if name in TOKENIZER_NAMES:
        return FileKind.TOKENIZER
    if suffix in (".md", ".txt", ".rst") or name.upper().startswith(("LICENSE", "LICENCE", "NOTICE", "README")):
        return FileKind.DOCUMENTATION
    return FileKind.OTHER


def weight_format(path: str) -> WeightFormat | None:
    suffix = PurePosixPath(path).suffix.lower()
    if suffix == ".safetensors":
        return WeightFormat.SAFETENSORS
    if suffix == ".gguf":
        return WeightFormat.GGUF
    return None


# --- bounded readers --------------------------------------------------------------------


def _truncated(what: str) -> InvalidInput:
    return InvalidInput(
        f"{what} is truncated or corrupt",
        hint="the file ends before its header says it should: copy or download it again",
    )


class _Cursor:
    """Reads exactly what is asked from a Reader, counting bytes against a budget."""

    def __init__(self, reader: Reader, budget: int, what: str) -> None:
        self.reader = reader
        self.budget = budget
        self.position = 0
        self.what = what

    def take(self, size: int) -> bytes:
        if size < 0:
            raise UnsafeInput(f"{self.what}: negative length in header", hint="the file is corrupt")
        if self.position + size > self.budget:
            raise TooLarge(
                f"{self.what}: the header is larger than {self.budget} bytes",
                hint="Aperture bounds header sizes so a hostile file cannot exhaust memory; "
                "if this is a genuine model, report it with the file's origin",
            )
        data = self.reader.read(size)
        if len(data) != size:
            raise _truncated(self.what)
        self.position += size
        return data

    def skip(self, size: int) -> None:
        """Consume `size` bytes in bounded chunks (for metadata whose values are not kept)."""
        if self.position + size > self.budget:
            self.take(size)  # raises TooLarge
        while size:
            step = min(size, 1 << 20)
            self.take(step)
            size -= step

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _depth(value: Any, limit: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            raise ValueError(f"nested deeper than {limit}")
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)


def parse_json_document(data: bytes, what: str, limits: HeaderLimits = DEFAULT_LIMITS) -> Any:
    """JSON from an untrusted file: bounded size and depth, duplicate keys refused, UTF-8 only."""
    if len(data) > limits.json_document_bytes:
        raise TooLarge(f"{what} is larger than {limits.json_document_bytes} bytes", hint="this is not a plain config")
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
        _depth(value, limits.json_depth)
    except RecursionError:
        raise UnsafeInput(f"{what} is nested too deeply", hint="the file is corrupt or hostile") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidInput(f"{what} is not valid JSON: {error}", hint="fix or regenerate the file") from None
    return value


# --- safetensors ------------------------------------------------------------------------

# Bits per element of each safetensors dtype.
SAFETENSORS_DTYPE_BITS: Mapping[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # offset of the first byte, relative to the start of the tensor data
    end: int

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True, slots=True)
class WeightsInfo:
    """What a weights file's header says: derived facts, never trusted without the size checks."""

    format: WeightFormat
    tensors: tuple[TensorInfo, ...]
    data_start: int
    metadata: Mapping[str, str]
    architecture: str | None = None

    @property
    def tensor_count(self) -> int:
        return len(self.tensors)

    @property
    def parameter_count(self) -> int:
        return sum(tensor.elements for tensor in self.tensors)

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(sorted({tensor.dtype for tensor in self.tensors}))


def safetensors_header_length(prefix: bytes, file_size: int, limits: HeaderLimits = DEFAULT_LIMITS) -> int:
    """The header length from the first 8 bytes, refused when absurd or beyond the file."""
    what = "safetensors file"
    if len(prefix) < 8 or file_size < 8:
        raise _truncated(what)
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > limits.safetensors_header_bytes:
        raise TooLarge(
            f"the safetensors header claims {length} bytes, above the {limits.safetensors_header_bytes}-byte limit",
            hint="the file is corrupt or hostile; genuine headers are a few megabytes at most",
        )
    if length < 2 or 8 + length > file_size:
        raise _truncated(f"{what} (header of {length} bytes in a {file_size}-byte file)")
    return int(length)


def _check_tensor(name: str, entry: Any, what: str, limits: HeaderLimits) -> TensorInfo:
    if not isinstance(entry, dict) or set(entry) - {"dtype", "shape", "data_offsets"} or len(entry) != 3:
        raise InvalidInput(f"{what}: tensor {name!r} has a malformed entry", hint="the file is corrupt")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPE_BITS:
        raise InvalidInput(
            f"{what}: tensor {name!r} has an unknown dtype {dtype!r}",
            hint="known dtypes: " + ", ".join(sorted(SAFETENSORS_DTYPE_BITS)),
        )
    if (
        not isinstance(shape, list)
        or len(shape) > limits.tensor_dims
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InvalidInput(f"{what}: tensor {name!r} has a malformed shape", hint="the file is corrupt")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise InvalidInput(f"{what}: tensor {name!r} has malformed data offsets", hint="the file is corrupt")
    elements = math.prod(shape)
    if elements > limits.tensor_elements:
        raise TooLarge(f"{what}: tensor {name!r} claims {elements} elements", hint="the file is corrupt or hostile")
    bits = elements * SAFETENSORS_DTYPE_BITS[dtype]
    if bits % 8 or offsets[1] - offsets[0] != bits // 8:
        raise InvalidInput(
            f"{what}: tensor {name!r} of shape {shape} and dtype {dtype} does not fit its {offsets[1] - offsets[0]}"
            " bytes",
            hint="the file is corrupt",
        )
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])


def parse_safetensors(reader: Reader, file_size: int, limits: HeaderLimits = DEFAULT_LIMITS) -> WeightsInfo:
    """Parse and check a safetensors header: 8-byte little-endian length, then a JSON object.

    The tensors must tile the data section exactly (no holes, no overlaps, nothing past the end):
    a file whose tensors reach beyond its size is truncated.
    """
    what = "safetensors file"
    cursor = _Cursor(reader, 8 + limits.safetensors_header_bytes, what)
    length = safetensors_header_length(cursor.take(8), file_size, limits)
    header = cursor.take(length)
    if not header.startswith(b"{"):
        raise InvalidInput(f"{what}: the header is not a JSON object", hint="this is not a safetensors file")
    try:
        document = json.loads(header.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise UnsafeInput(f"{what}: the header is nested too deeply", hint="the file is corrupt or hostile") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidInput(f"{what}: the header is not valid JSON ({error})", hint="the file is corrupt") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{what}: the header is not a JSON object", hint="the file is corrupt")
    raw_metadata = document.pop("__metadata__", None) or {}
    if not isinstance(raw_metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw_metadata.items()
    ):
        raise InvalidInput(f"{what}: __metadata__ must map strings to strings", hint="the file is corrupt")
    tensors = [_check_tensor(name, entry, what, limits) for name, entry in document.items()]
    data_size = file_size - 8 - length
    position = 0
    for tensor in sorted(tensors, key=lambda t: (t.start, t.end)):
        if tensor.start != position:
            problem = "overlaps another tensor" if tensor.start < position else "leaves a hole before it"
            raise InvalidInput(f"{what}: tensor {tensor.name!r} {problem}", hint="the file is corrupt")
        position = tensor.end
    if position > data_size:
        raise _truncated(f"{what} (tensors need {position} bytes of data, the file holds {data_size})")
    if position < data_size:
        raise InvalidInput(
            f"{what}: {data_size - position} bytes after the last tensor are not described by the header",
            hint="the file is corrupt or has data appended",
        )
    metadata = {str(k)[:200]: str(v)[:1000] for k, v in list(raw_metadata.items())[:64]}
    return WeightsInfo(WeightFormat.SAFETENSORS, tuple(tensors), 8 + length, metadata)


# --- GGUF -------------------------------------------------------------------------------

GGUF_MAGIC = b"GGUF"
GGUF_DEFAULT_ALIGNMENT = 32

# ggml tensor types: id -> (name, elements per block, bytes per block) (ggml.h / gguf-py constants).
GGML_TYPES: Mapping[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}

# GGUF metadata value types: id -> struct format of one scalar (None: string, array).
_GGUF_SCALARS: Mapping[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
# Metadata kept for display: scalar values and strings up to this length (tokenizer arrays are skipped).
_KEEP_STRING = 512


def _gguf_string(cursor: _Cursor, limits: HeaderLimits) -> str:
    length = cursor.u64()
    if length > limits.gguf_string_bytes:
        raise TooLarge(
            f"{cursor.what}: a string claims {length} bytes (limit {limits.gguf_string_bytes})",
            hint="the file is corrupt or hostile",
        )
    raw = cursor.take(length)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{cursor.what}: a string is not valid UTF-8", hint="the file is corrupt") from None


def _gguf_value(cursor: _Cursor, value_type: int, limits: HeaderLimits, *, nested: bool = False) -> Any:
    if value_type in _GGUF_SCALARS:
        fmt = _GGUF_SCALARS[value_type]
        value = struct.unpack(fmt, cursor.take(struct.calcsize(fmt)))[0]
        if value_type == 7 and not isinstance(value, bool):
            raise InvalidInput(f"{cursor.what}: malformed boolean", hint="the file is corrupt")
        return value
    if value_type == _GGUF_STRING:
        return _gguf_string(cursor, limits)
    if value_type == _GGUF_ARRAY and not nested:
        item_type = cursor.u32()
        count = cursor.u64()
        if count > limits.gguf_array_items:
            raise TooLarge(
                f"{cursor.what}: an array claims {count} items (limit {limits.gguf_array_items})",
                hint="the file is corrupt or hostile",
            )
        if item_type in _GGUF_SCALARS:
            cursor.skip(count * struct.calcsize(_GGUF_SCALARS[item_type]))
        elif item_type == _GGUF_STRING:
            for _ in range(count):
                _gguf_string(cursor, limits)
        else:
            raise InvalidInput(f"{cursor.what}: unsupported array item type {item_type}", hint="the file is corrupt")
        return _ArrayValue(item_type, count)
    raise InvalidInput(f"{cursor.what}: unknown metadata value type {value_type}", hint="the file is corrupt")


@dataclass(frozen=True, slots=True)
class _ArrayValue:
    item_type: int
    count: int


def parse_gguf(reader: Reader, file_size: int, limits: HeaderLimits = DEFAULT_LIMITS) -> WeightsInfo:
    """Parse and check a GGUF v2/v3 header: magic, version, counts, typed metadata, tensor infos.

    Counts, strings and arrays are bounded before anything is read for them; every tensor must
    lie aligned inside the data section and inside the file.
    """
    what = "GGUF file"
    cursor = _Cursor(reader, limits.gguf_metadata_bytes, what)
    if cursor.take(4) != GGUF_MAGIC:
        raise InvalidInput(f"{what}: wrong magic bytes, this is not a GGUF file", hint="check the file")
    version = cursor.u32()
    if version not in (2, 3):
        if version in (0x02000000, 0x03000000):
            raise InvalidInput(f"{what}: big-endian GGUF is not supported", hint="convert it to little-endian")
        raise InvalidInput(
            f"{what}: unsupported GGUF version {version}", hint="only GGUF v2 and v3 are read; reconvert with llama.cpp"
        )
    tensor_count, kv_count = cursor.u64(), cursor.u64()
    if tensor_count > limits.gguf_tensor_count:
        raise TooLarge(
            f"{what}: the header claims {tensor_count} tensors (limit {limits.gguf_tensor_count})",
            hint="the file is corrupt or hostile",
        )
    if kv_count > limits.gguf_kv_count:
        raise TooLarge(
            f"{what}: the header claims {kv_count} metadata entries (limit {limits.gguf_kv_count})",
            hint="the file is corrupt or hostile",
        )
    metadata: dict[str, str] = {}
    alignment = GGUF_DEFAULT_ALIGNMENT
    architecture: str | None = None
    seen: set[str] = set()
    for _ in range(kv_count):
        key = _gguf_string(cursor, limits)
        if key in seen:
            raise InvalidInput(f"{what}: duplicate metadata key {key!r}", hint="the file is corrupt")
        seen.add(key)
        value = _gguf_value(cursor, cursor.u32(), limits)
        if key == "general.alignment":
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value & (value - 1):
                raise InvalidInput(f"{what}: general.alignment must be a power of two", hint="the file is corrupt")
            alignment = value
        if key == "general.architecture" and isinstance(value, str):
            architecture = value
        if isinstance(value, _ArrayValue):
            metadata[key] = f"[{value.count} items]"
        elif isinstance(value, str):
            if len(value) <= _KEEP_STRING:
                metadata[key] = value
        else:
            metadata[key] = str(value)
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for _ in range(tensor_count):
        name = _gguf_string(cursor, limits)
        if name in names:
            raise InvalidInput(f"{what}: duplicate tensor name {name!r}", hint="the file is corrupt")
        names.add(name)
        n_dims = cursor.u32()
        if n_dims == 0 or n_dims > limits.gguf_dims:
            raise InvalidInput(f"{what}: tensor {name!r} has {n_dims} dimensions", hint="the file is corrupt")
        shape = tuple(cursor.u64() for _ in range(n_dims))
        type_id = cursor.u32()
        offset = cursor.u64()
        if type_id not in GGML_TYPES:
            raise InvalidInput(f"{what}: tensor {name!r} has unknown ggml type {type_id}", hint="update Aperture")
        type_name, block, block_bytes = GGML_TYPES[type_id]
        elements = math.prod(shape)
        if elements > limits.tensor_elements:
            raise TooLarge(f"{what}: tensor {name!r} claims {elements} elements", hint="the file is corrupt")
        if shape[0] % block:
            raise InvalidInput(
                f"{what}: tensor {name!r} rows of {shape[0]} are not whole {type_name} blocks",
                hint="the file is corrupt",
            )
        if offset % alignment:
            raise InvalidInput(f"{what}: tensor {name!r} is not aligned to {alignment}", hint="the file is corrupt")
        size = elements // block * block_bytes
        tensors.append(TensorInfo(name, type_name, shape, offset, offset + size))
    data_start = -(-cursor.position // alignment) * alignment
    end = data_start
    previous_end = 0
    for tensor in sorted(tensors, key=lambda t: t.start):
        if tensor.start < previous_end:
            raise InvalidInput(f"{what}: tensor {tensor.name!r} overlaps another tensor", hint="the file is corrupt")
        previous_end = tensor.end
        end = max(end, data_start + tensor.end)
    if end > file_size:
        raise _truncated(f"{what} (tensor data needs {end} bytes, the file has {file_size})")
    return WeightsInfo(WeightFormat.GGUF, tuple(tensors), data_start, metadata, architecture)


# --- what a whole model directory says ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelConfig:
    architectures: tuple[str, ...] = ()
    model_type: str | None = None


def parse_model_config(data: bytes, limits: HeaderLimits = DEFAULT_LIMITS) -> ModelConfig:
    document = parse_json_document(data, "config.json", limits)
    if not isinstance(document, dict):
        raise InvalidInput("config.json is not a JSON object", hint="fix or regenerate config.json")
    architectures = document.get("architectures") or []
    model_type = document.get("model_type")
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise InvalidInput("config.json: `architectures` must be a list of strings", hint="fix config.json")
    if model_type is not None and not isinstance(model_type, str):
        raise InvalidInput("config.json: `model_type` must be a string", hint="fix config.json")
    return ModelConfig(tuple(a[:200] for a in architectures[:16]), model_type[:200] if model_type else None)


def parse_safetensors_index(data: bytes, what: str, limits: HeaderLimits = DEFAULT_LIMITS) -> dict[str, str]:
    """`model.safetensors.index.json`: tensor name -> shard file (relative, checked for traversal)."""
    document = parse_json_document(data, what, limits)
    weight_map = document.get("weight_map") if isinstance(document, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise InvalidInput(f"{what}: `weight_map` must map tensor names to files", hint="fix or regenerate the index")
    for shard in set(weight_map.values()):
        check_relative_path(shard, limits)
    return dict(weight_map)


@dataclass(frozen=True, slots=True)
class DerivedFacts:
    """Facts read from the files themselves, not declared."""

    format: WeightFormat
    parameter_count: int
    tensor_count: int
    dtypes: tuple[str, ...]
    architecture: str | None
    model_type: str | None
    weight_files: tuple[str, ...]


def derive_facts(
    weights: Mapping[str, WeightsInfo],
    *,
    config: ModelConfig | None = None,
    indexes: Mapping[str, Mapping[str, str]] | None = None,
) -> DerivedFacts:
    """Combine the headers of a model's weight files, checking shard indexes against them.

    `weights` maps paths relative to the model root to parsed headers; `indexes` maps the path of
    each `*.safetensors.index.json` to its weight map. With indexes, only the shards they name
    count (a repository may also carry e.g. a consolidated copy); every shard an index names must
    be present and hold the tensors the index assigns to it.
    """
    if not weights:
        raise InvalidInput(
            "no model weights found",
            hint="register a .safetensors or .gguf file, or a directory containing them",
        )
    counted: dict[str, WeightsInfo] = dict(weights)
    if indexes:
        shards: set[str] = set()
        for index_path, weight_map in indexes.items():
            parent = str(PurePosixPath(index_path).parent)
            prefix = "" if parent == "." else parent + "/"
            names_by_shard: dict[str, set[str]] = {}
            for tensor_name, shard in weight_map.items():
                path = prefix + shard
                if path not in weights:
                    raise InvalidInput(
                        f"{index_path} names shard {shard}, which is not in the directory",
                        hint="copy every shard the index lists, or regenerate the index",
                    )
                if path not in names_by_shard:
                    names_by_shard[path] = {t.name for t in weights[path].tensors}
                if tensor_name not in names_by_shard[path]:
                    raise InvalidInput(
                        f"{index_path} says tensor {tensor_name!r} is in {shard}, but that shard does not hold it",
                        hint="the index and the shards come from different exports: regenerate the index",
                    )
                shards.add(path)
        counted = {path: info for path, info in weights.items() if path in shards}
        if not counted:
            raise InvalidInput("the shard index names no weights", hint="regenerate the index")
    formats = {info.format for info in counted.values()}
    if len(formats) > 1:
        raise InvalidInput(
            "the directory mixes safetensors and GGUF weights",
            hint="register each format as its own version",
        )
    from_headers = next((info.architecture for info in counted.values() if info.architecture), None)
    architecture = config.architectures[0] if config and config.architectures else from_headers
    model_type = config.model_type if config and config.model_type else from_headers
    return DerivedFacts(
        format=formats.pop(),
        parameter_count=sum(info.parameter_count for info in counted.values()),
        tensor_count=sum(info.tensor_count for info in counted.values()),
        dtypes=tuple(sorted({dtype for info in counted.values() for dtype in info.dtypes})),
        architecture=architecture,
        model_type=model_type,
        weight_files=tuple(sorted(counted)),
    )


# --- the registered records ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One file of a version: its path inside the model, size and SHA-256 (its store address)."""

    path: str
    size: int
    sha256: str
    kind: FileKind


@dataclass(frozen=True, slots=True)
class ModelVersion:
    id: str
    model_name: str
    version: str
    registered_at: datetime
    registered_by: str
    format: WeightFormat
    architecture: str | None
    model_type: str | None
    parameter_count: int
    tensor_count: int
    dtypes: tuple[str, ...]
    total_bytes: int
    files: tuple[ArtifactFile, ...]
    facts: VersionFacts
    manifest_digest: str  # model_signing's subject digest: SHA-256 over the file digests in path order
    signing_key_id: str
    signature: str  # the Sigstore bundle (JSON) written as `model.sig` on export
    schema_version: int = SCHEMA_VERSION
    # The signed facts document (FACTS_FILE, listed in the signed manifest) and the log's leaf that
    # recorded its digest; None for versions registered before facts were signed.
    signed_facts: str | None = None
    facts_event: int | None = None

    @property
    def facts_digest(self) -> str | None:
        return None if self.signed_facts is None else facts_digest(self.signed_facts)

    @property
    def reference(self) -> str:
        return f"{self.model_name}:{self.version}"

    @property
    def above_systemic_risk_presumption(self) -> bool:
        """EU AI Act art. 51(2): general-purpose models trained with more than 1e25 FLOP."""
        return self.facts.training_flop is not None and self.facts.training_flop > 10**25


@dataclass(frozen=True, slots=True)
class ModelSummary:
    name: str
    created_at: datetime
    created_by: str
    versions: tuple[str, ...]  # in registration order

    @property
    def latest_version(self) -> str | None:
        return self.versions[-1] if self.versions else None


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    name: str
    created_at: datetime
    created_by: str
    versions: tuple[ModelVersion, ...]


def manifest_entries(files: Sequence[ArtifactFile]) -> list[tuple[str, str]]:
    """(path, sha256) in the order model_signing signs them."""
    return sorted((file.path, file.sha256) for file in files)


# --- the signed facts ---------------------------------------------------------------------
#
# The facts that drive release decisions (compute, parameters, licence, lineage, security level)
# are written into a small JSON document that joins the version's files in the signed manifest
# under FACTS_FILE. The document names the version (model, version, id), so the signature is bound
# to the version it is stored with; `model_signing verify` re-hashes it like any other file of an
# export, so the statement stays exactly the one model_signing builds.

FACTS_SCHEMA = "aperture-version-facts/1"
MAX_FACTS_BYTES = 1024 * 1024
BINDING_FIELDS = ("model", "version", "version_id")
# Registration-event detail -> field of the signed facts (the lower tier's event carries these).
EVENT_FACT_FIELDS = {
    "format": "format",
    "architecture": "architecture",
    "parameter_count": "parameter_count",
    "total_bytes": "total_bytes",
    "files": "file_count",
    "licence": "licence",
    "training_flop": "training_flop",
    "base_model": "lineage.base_model",
    "base_external": "lineage.external",
    "base_licence": "lineage.base_licence",
}


class FactsStatus(StrEnum):
    SIGNED = "signed"
    UNSIGNED = "unsigned"  # registered before facts were signed


def fact_values(version: ModelVersion, level: SecurityLevel | None, programme: str | None) -> dict[str, Any]:
    """What the signed facts say of a version, from its record (JSON values only).

    A canary flag is left out on purpose: the document travels with exports, and must not give a
    decoy away."""
    facts = version.facts
    lineage = facts.lineage
    return {
        "schema": FACTS_SCHEMA,
        "model": version.model_name,
        "version": version.version,
        "version_id": version.id,
        "registered_at": version.registered_at.astimezone(UTC).isoformat(),
        "format": version.format.value,
        "architecture": version.architecture,
        "model_type": version.model_type,
        "parameter_count": version.parameter_count,
        "tensor_count": version.tensor_count,
        "dtypes": list(version.dtypes),
        "total_bytes": version.total_bytes,
        "file_count": len(version.files),
        "licence": facts.licence,
        "training_flop": None if facts.training_flop is None else str(facts.training_flop),
        "modalities": [m.value for m in facts.modalities],
        "intended_use": facts.intended_use,
        "description": facts.description,
        "data_summary": facts.data_summary,
        "lineage": {
            "base_model": lineage.base_model,
            "external": lineage.external,
            "base_licence": lineage.base_licence,
            "base_version_id": lineage.base_version_id,
        },
        "security": {"level": None if level is None else str(level), "programme": programme},
    }


def facts_document(values: Mapping[str, Any]) -> str:
    """The signed document: canonical JSON (sorted keys, two-space indent, UTF-8, final newline)."""
    return json.dumps(values, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def facts_digest(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def read_facts(document: str) -> dict[str, Any]:
    """Parse a stored facts document (bounded); IntegrityFailure when it is not one."""
    if len(document) > MAX_FACTS_BYTES:
        raise IntegrityFailure("the stored facts document is too large", hint="restore the database from backup")
    try:
        values = json.loads(document)
    except ValueError:
        values = None
    if not isinstance(values, dict) or values.get("schema") != FACTS_SCHEMA:
        raise IntegrityFailure(
            "the stored facts are not an Aperture facts document", hint="restore the database from backup"
        )
    return values


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def facts_binding(signed: Mapping[str, Any], version: ModelVersion) -> str | None:
    """Why the signed facts belong to another version, or None when they name this one."""
    if all(signed.get(key) == value for key, value in zip(BINDING_FIELDS, _binding(version), strict=True)):
        return None
    other = f"{signed.get('model')}:{signed.get('version')}"
    return f"the signed facts belong to version id {signed.get('version_id')} ({other}), not to {version.reference}"


def _binding(version: ModelVersion) -> tuple[str, str, str]:
    return version.model_name, version.version, version.id


def compare_facts(signed: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, problem) for every fact the database holds differently from the signed document."""
    ours, theirs = _flat(current), _flat(signed)
    problems: list[tuple[str, str]] = []
    for name in sorted(set(ours) | set(theirs)):
        if name in BINDING_FIELDS or name == "schema":
            continue
        if ours.get(name) != theirs.get(name):
            problems.append(
                (name, f"{name} is {_shown(ours.get(name))} in the database, {_shown(theirs.get(name))} where signed")
            )
    return problems


def compare_with_event(details: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, problem) for the facts a lower-tier registration event recorded that differ now."""
    ours = _flat(current)
    problems: list[tuple[str, str]] = []
    for key, name in EVENT_FACT_FIELDS.items():
        if key in details and details[key] != ours.get(name):
            problems.append(
                (name, f"{name} is {_shown(ours.get(name))} in the database, {_shown(details[key])} when registered")
            )
    return problems
