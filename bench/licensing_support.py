"""What the licensing benchmarks share: the bundled model converted once (kept in bench/.work/models
between runs), the original loaded the way the service loads it, a marked copy written the way the
service streams it, and a trace of a suspect file through the product's own functions."""

from __future__ import annotations

import resource
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aperture.licensing import marking
from aperture.licensing.weights import (
    EMBEDDING,
    open_suspect,
    parse_safetensors,
    requantized_reference,
    safetensors_stream,
)
from aperture.ml import bundled

WORK = Path(__file__).resolve().parent / ".work"
MODEL, VERSION = "SmolLM2-135M-Instruct", "0.1.2"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bundled_dir() -> Path:
    return bundled.convert_to_safetensors(bundled.find_bundled_gguf(), WORK / "models")


def load_original(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, str], bytearray]:
    path = directory / "model.safetensors"
    buffer = bytearray(path.stat().st_size)
    with path.open("rb") as handle:
        handle.readinto(buffer)
    arrays, metadata = parse_safetensors(buffer)
    return arrays, metadata, buffer


def seeds_for(master: bytes, count: int) -> dict[str, bytes]:
    return {
        f"licensee-{i:04d}": marking.licensee_seed(master, MODEL, VERSION, f"licensee-{i:04d}") for i in range(count)
    }


def write_marked(arrays: dict[str, np.ndarray], metadata: dict[str, str], seed: bytes, out: Path) -> int:
    names = set(marking.marked_names(arrays))

    def mark(name: str, array: np.ndarray) -> np.ndarray:
        return marking.mark_tensor(name, array, seed) if name in names else array

    size, chunks = safetensors_stream(arrays, metadata, mark)
    with out.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
        handle.flush()
    return size


@dataclass
class Traced:
    residual: marking.Residual
    registration: marking.Registration
    seconds: float


def residual_of(suspect_path: Path, arrays: dict[str, np.ndarray]) -> Traced:
    started = time.perf_counter()
    suspect = open_suspect(suspect_path)
    rotation = marking.rotation_of(suspect.get(EMBEDDING), arrays.get(EMBEDDING))
    registration = marking.Registration(rotated=rotation is not None)
    reference = requantized_reference(suspect.quantization)
    stored: dict[str, np.ndarray] = {}
    scales: dict[str, float] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for name in marking.marked_names(arrays):
        s = suspect.get(name)
        if s is None or s.shape != arrays[name].shape:
            registration.missing.append(name)
            continue
        registered = marking.register_tensor(name, s, arrays[name], rotation, registration)
        stored[name], scales[name] = marking.compact(marking.residual_vector(name, registered, arrays[name], reference))
        shapes[name] = tuple(arrays[name].shape)
    return Traced(marking.Residual.build(stored, scales, shapes), registration, time.perf_counter() - started)


def new_master() -> bytes:
    return secrets.token_bytes(32)
