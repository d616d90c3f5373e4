"""The white-box keyed spread-spectrum mark of licensed copies, and its detector. Pure maths: numpy
and scipy on arrays in memory, no files, no database.

Design: `docs/licensing.md` and the research report's Part A (sections A.5.0-A.5.1).

- Each licensee's seed is HMAC-SHA256(master secret, model | version | licensee); each tensor's
  noise stream is a Philox generator keyed by SHA-256(seed | tensor name) (counter-based, so a
  tensor's pattern is made without drawing anyone else's).
- Embedding: every 2-D projection inside the transformer blocks gets `W + alpha * sigma_row(W) * g`
  with g ~ N(0, 1): no training, the same cost as reading the weights once.
- Detection is non-blind: subtract the original W0 (or its re-quantised form), after registering
  the suspect to W0's coordinates (tensor names, row and column permutations, per-row rescaling,
  a rotation of the residual stream), then correlate with each key:
  `z = sum(<r * sigma_row, g>) / sqrt(sum((r * sigma_row)^2))`. For any key not used to make the
  suspect, z is exactly N(0, 1) given r, whatever was done to the copy; an accusation needs z >= 6.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from aperture.licensing.domain import MARK_ALPHA, MARK_SEED_BYTES, MARK_THRESHOLD

ALPHA = MARK_ALPHA
THRESHOLD = MARK_THRESHOLD
SEED_BYTES = MARK_SEED_BYTES

# Llama-family block projections (Hugging Face names): the tensors that carry the mark.
_MARKED = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$")
# Which side of each projection faces the residual stream: input-side matrices read it (columns),
# output-side ones write it (rows). Used by rotation registration.
_INPUT_SIDE = ("q", "k", "v", "gate", "up")
_OUTPUT_SIDE = ("o", "down")

Array = np.ndarray
Weights = Mapping[str, Array]
Reference = Callable[[str, Array], Array]  # re-quantises W0 the way the suspect was quantised


def licensee_seed(master: bytes, model: str, version: str, licensee: str) -> bytes:
    """The per-licensee seed (A.5.0): keyed by the sealed master secret, never an unkeyed global."""
    if len(master) < 16:
        raise ValueError("the master secret must be at least 16 bytes")
    return hmac.new(master, f"{model}|{version}|{licensee}".encode(), hashlib.sha256).digest()


def null_seed(nonce: bytes, index: int) -> bytes:
    """Never-issued keys for the empirical null: derived from a report's nonce, so a report can be
    re-checked, and never equal to an issued seed (which needs the master secret)."""
    return hashlib.sha256(b"aperture null key v1|" + nonce + index.to_bytes(8, "big")).digest()


def seed_commitment(seed: bytes, shard_hashes: Sequence[str]) -> str:
    """C_j = SHA-256(seed | shard hashes): published in the log at release, opened in a report."""
    hasher = hashlib.sha256(b"aperture mark commitment v1|" + seed)
    for digest in shard_hashes:
        hasher.update(b"|" + digest.encode("ascii"))
    return hasher.hexdigest()


def pattern(seed: bytes, name: str, shape: tuple[int, ...]) -> Array:
    key = hashlib.sha256(seed + b"|" + name.encode()).digest()
    generator = np.random.Generator(np.random.Philox(key=int.from_bytes(key[:16], "little")))
    return generator.standard_normal(shape, dtype=np.float32)


def marked_names(names: Iterable[str]) -> list[str]:
    """The 2-D block projections, in a fixed order (embeddings, LM head, norms and biases are left alone)."""
    return sorted((name for name in names if _MARKED.search(name)), key=_order)


def _order(name: str) -> tuple[int, str]:
    match = _MARKED.search(name)
    return (int(match.group(1)), name) if match else (-1, name)


def _kind(name: str) -> str:
    match = _MARKED.search(name)
    if match is None:
        raise ValueError(f"{name} is not a marked projection")
    return match.group(2) or match.group(3)


def row_sigma(weight: Array) -> Array:
    sigma: Array = np.asarray(weight, dtype=np.float32).std(axis=1, keepdims=True)
    return sigma


def embed(weights: Weights, seed: bytes, alpha: float = ALPHA) -> dict[str, Array]:
    """A marked copy: every marked tensor gets its keyed perturbation, cast back to its dtype;
    the other tensors are the same arrays (no copy)."""
    out = dict(weights)
    for name in marked_names(weights):
        out[name] = mark_tensor(name, weights[name], seed, alpha)
    return out


def mark_tensor(name: str, weight: Array, seed: bytes, alpha: float = ALPHA) -> Array:
    """One tensor of a licensee's copy, in its own dtype (computed in float32)."""
    work = np.asarray(weight, dtype=np.float32)
    noise = pattern(seed, name, work.shape)
    noise *= row_sigma(work) * np.float32(alpha)
    noise += work
    return noise.astype(weight.dtype, copy=False)


def embed_in_place(weights: Mapping[str, Array], seed: bytes, alpha: float = ALPHA) -> None:
    """Mark float32 arrays in place (the copy being written owns them): no second model in memory."""
    for name in marked_names(weights):
        array = weights[name]
        if array.dtype != np.float32 or not array.flags.writeable:
            raise ValueError(f"{name}: in-place marking needs a writable float32 array")
        noise = pattern(seed, name, array.shape)
        noise *= row_sigma(array) * np.float32(alpha)
        array += noise


# --- registration -----------------------------------------------------------------------------


@dataclass
class Registration:
    """What was undone to bring the suspect into the original's coordinates (for the report)."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    row_permuted: list[str] = field(default_factory=list)
    column_permuted: list[str] = field(default_factory=list)
    rescaled: list[str] = field(default_factory=list)
    rotated: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "matched": len(self.matched),
            "missing": self.missing,
            "row_permuted": self.row_permuted,
            "column_permuted": self.column_permuted,
            "rescaled": self.rescaled,
            "rotated": self.rotated,
        }


def _unit_rows(matrix: Array) -> Array:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: Array = matrix / norms
    return unit


def _align_rows(suspect: Array, original: Array) -> Array | None:
    """The row order that maps the suspect's rows onto the original's, when they are not already
    in order: a linear assignment on row cosines (None when the identity fits)."""
    a, b = _unit_rows(suspect), _unit_rows(original)
    diagonal = np.einsum("ij,ij->i", a, b)
    if float(np.median(diagonal)) > 0.5 and float(np.mean(diagonal > 0.3)) > 0.95:
        return None
    from scipy.optimize import linear_sum_assignment  # scipy.optimize takes half a second to load

    _, columns = linear_sum_assignment(-(b @ a.T))
    return np.asarray(columns)


def _rescale_rows(suspect: Array, original: Array) -> Array | None:
    """Per-row least-squares scale (up rows / c, down columns * c leave the function unchanged);
    pruned (zero) coordinates are left out of the fit. None when no row was rescaled."""
    mask = suspect != 0
    num = np.einsum("ij,ij->i", suspect * mask, original)
    den = np.einsum("ij,ij->i", original * mask, original)
    den[den == 0] = 1.0
    scale = num / den
    scale[~np.isfinite(scale) | (scale == 0)] = 1.0
    if float(np.max(np.abs(scale - 1.0))) < 0.05:
        return None
    fitted: Array = scale.astype(np.float32)
    return fitted


def _rotation(suspect_embedding: Array, original_embedding: Array) -> Array | None:
    """Orthogonal Procrustes on the embeddings: Q with E_s ~ E0 @ Q, or None when E_s ~ E0.
    Computed in blocks of rows: the embedding is the largest tensor, and no full-size copy of it
    is made."""
    rows = original_embedding.shape[0]
    block = 8192
    base = diff = 0.0
    cross = np.zeros((original_embedding.shape[1],) * 2, dtype=np.float64)
    for start in range(0, rows, block):
        e0 = np.asarray(original_embedding[start : start + block], dtype=np.float32)
        es = np.asarray(suspect_embedding[start : start + block], dtype=np.float32)
        base += float(np.vdot(e0, e0))
        delta = es - e0
        diff += float(np.vdot(delta, delta))
        cross += (e0.T @ es).astype(np.float64)
    if diff < 0.25 * base:
        return None
    u, _, vt = np.linalg.svd(cross)
    q: Array = (u @ vt).astype(np.float32)
    fit = 0.0
    for start in range(0, rows, block):
        e0 = np.asarray(original_embedding[start : start + block], dtype=np.float32)
        es = np.asarray(suspect_embedding[start : start + block], dtype=np.float32)
        delta = es - e0 @ q
        fit += float(np.vdot(delta, delta))
    if fit > 0.25 * base:
        return None  # not a rotation of the original embedding: nothing to undo
    return q


def register_tensor(name: str, suspect: Array, original: Array, rotation: Array | None, report: Registration) -> Array:
    """One suspect tensor in the original's coordinates (a new float32 array)."""
    s = np.array(suspect, dtype=np.float32)
    w0 = np.asarray(original, dtype=np.float32)
    if rotation is not None:
        s = s @ rotation.T if _kind(name) in _INPUT_SIDE else rotation @ s
    # Neurons and heads are what can be permuted without changing the function: the rows of
    # input-side projections (q, k, v, gate, up) and the columns of output-side ones (o, down).
    if _kind(name) in _INPUT_SIDE:
        rows = _align_rows(s, w0)
        if rows is not None:
            s = s[rows]
            report.row_permuted.append(name)
    else:
        columns = _align_rows(s.T, w0.T)
        if columns is not None:
            s = s[:, columns]
            report.column_permuted.append(name)
    # Per-neuron rescaling (up rows / c with down columns * c; q/k per head) follows the same sides.
    if _kind(name) in _INPUT_SIDE:
        scale = _rescale_rows(s, w0)
        if scale is not None:
            s /= scale[:, None]
            report.rescaled.append(name)
    else:
        column_scale = _rescale_rows(s.T, w0.T)
        if column_scale is not None:
            s /= column_scale[None, :]
            report.rescaled.append(name)
    report.matched.append(name)
    return s


def rotation_of(suspect_embedding: Array | None, original_embedding: Array | None) -> Array | None:
    if suspect_embedding is None or original_embedding is None:
        return None
    if suspect_embedding.shape != original_embedding.shape:
        return None
    return _rotation(suspect_embedding, original_embedding)


def register(
    suspect: Mapping[str, Array],
    original: Mapping[str, Array],
    *,
    embedding: str | None = None,
) -> tuple[dict[str, Array], Registration]:
    """Bring the suspect's marked tensors into the original's coordinates. Uses the suspect and
    the original only (never a key), so innocent keys' z stays exactly N(0, 1)."""
    report = Registration()
    rotation = None
    if embedding:
        rotation = rotation_of(suspect.get(embedding), original.get(embedding))
    report.rotated = rotation is not None
    out: dict[str, Array] = {}
    for name in marked_names(original):
        if name not in suspect or suspect[name].shape != original[name].shape:
            report.missing.append(name)
            continue
        out[name] = register_tensor(name, suspect[name], original[name], rotation, report)
    return out, report


# --- scoring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Residual:
    """The suspect's registered residual, weighted by sigma_row and flattened per tensor: the part
    of every z computation that does not depend on the key.

    Kept as float16 with one float scale per tensor (half the memory of float32, so tracing holds
    the original plus a quarter of a model): z is computed from exactly these stored values, so
    its null distribution is unchanged; the rounding only adds noise of 0.05 % to the residual."""

    vectors: dict[str, Array]  # float16, each divided by its scale
    scales: dict[str, float]
    shapes: dict[str, tuple[int, ...]]
    energy: float  # sum of squares over all coordinates (of the stored values)
    coordinates: int

    @classmethod
    def of(cls, vectors: dict[str, Array], shapes: dict[str, tuple[int, ...]]) -> Residual:
        stored: dict[str, Array] = {}
        scales: dict[str, float] = {}
        for name, vector in vectors.items():
            stored[name], scales[name] = compact(vector)
        return cls.build(stored, scales, {n: shapes[n] for n in stored})

    @classmethod
    def build(cls, stored: dict[str, Array], scales: dict[str, float], shapes: dict[str, tuple[int, ...]]) -> Residual:
        energy = 0.0
        for name, vector in stored.items():
            wide = vector.astype(np.float32)
            energy += float(wide @ wide) * scales[name] ** 2
        return cls(stored, scales, shapes, energy, sum(v.size for v in stored.values()))

    def subset(self, names: Sequence[str]) -> Residual:
        chosen = [name for name in names if name in self.vectors]
        return Residual.build(
            {n: self.vectors[n] for n in chosen},
            {n: self.scales[n] for n in chosen},
            {n: self.shapes[n] for n in chosen},
        )


def compact(vector: Array) -> tuple[Array, float]:
    peak = float(np.max(np.abs(vector))) if vector.size else 0.0
    scale = peak / 1024.0 if peak > 0 else 1.0  # values land in [-1024, 1024]: well inside float16
    return (vector / np.float32(scale)).astype(np.float16), scale


def residual_vector(name: str, registered: Array, original: Array, reference: Reference | None = None) -> Array:
    """One tensor's residual r * sigma_row, flattened; pruned (zero) coordinates carry no mark."""
    w0 = np.asarray(original, dtype=np.float32)
    base = reference(name, w0) if reference is not None else w0
    r = registered - base
    r[registered == 0] = 0.0
    r *= row_sigma(w0)
    flat: Array = r.ravel()
    return flat


def residual(
    registered: Mapping[str, Array], original: Mapping[str, Array], reference: Reference | None = None
) -> Residual:
    return Residual.of(
        {name: residual_vector(name, registered[name], original[name], reference) for name in marked_names(registered)},
        {name: tuple(original[name].shape) for name in marked_names(registered)},
    )


def zscore(res: Residual, seed: bytes) -> float:
    if res.energy <= 0:
        return 0.0
    total = 0.0
    for name, vector in res.vectors.items():
        total += float(vector.astype(np.float32) @ pattern(seed, name, res.shapes[name]).ravel()) * res.scales[name]
    return total / float(np.sqrt(res.energy))


def screening_names(names: Sequence[str], fraction: float, sizes: Mapping[str, int]) -> list[str]:
    """A fixed, spread-out subset of the marked tensors holding about `fraction` of the coordinates:
    every k-th tensor, so each layer depth and projection kind is represented."""
    ordered = marked_names(names)
    total = sum(sizes[name] for name in ordered)
    if fraction >= 1 or not ordered:
        return ordered
    step = max(1, round(1 / fraction))
    chosen = ordered[step // 2 :: step]
    while chosen and sum(sizes[n] for n in chosen) > 2 * fraction * total and len(chosen) > 1:
        chosen = chosen[::2]
    return chosen or ordered[:1]


def empirical_null(res: Residual, nonce: bytes, count: int) -> list[float]:
    return [zscore(res, null_seed(nonce, index)) for index in range(count)]


def energy_ratio(marked: Weights, original: Weights) -> float:
    """||marked - original|| / ||original|| over the marked tensors (0.2 % at alpha = 2e-3)."""
    diff = 0.0
    base = 0.0
    for name in marked_names(original):
        w0 = np.asarray(original[name], dtype=np.float32)
        d = np.asarray(marked[name], dtype=np.float32) - w0
        diff += float(np.vdot(d, d))
        base += float(np.vdot(w0, w0))
    return float(np.sqrt(diff / base)) if base else 0.0


CONFIRM_SCREEN_Z = 2.5


@dataclass(frozen=True)
class Scored:
    key: str
    screen_z: float
    z: float | None  # on every coordinate; None when the screen left the key out


def screen_subset(res: Residual, fraction: float) -> Residual:
    sizes = {name: vector.size for name, vector in res.vectors.items()}
    return res.subset(screening_names(list(res.vectors), fraction, sizes))


def score_keys(
    res: Residual,
    seeds: Mapping[str, bytes],
    *,
    screen_fraction: float,
    confirm_top: int,
    confirm_screen_z: float = CONFIRM_SCREEN_Z,
) -> list[Scored]:
    """Screen every key on a coordinate subset (z shrinks by about sqrt(fraction)), then confirm
    on every coordinate the `confirm_top` best and any key whose screen z reaches
    `confirm_screen_z`. Sorted best first. With fraction 1 every key gets the full test."""
    if screen_fraction >= 1:
        full = [Scored(key, z, z) for key, z in ((key, zscore(res, seed)) for key, seed in seeds.items())]
        return sorted(full, key=lambda s: -s.screen_z)
    screen = screen_subset(res, screen_fraction)
    screened = sorted(((key, zscore(screen, seed)) for key, seed in seeds.items()), key=lambda item: -item[1])
    chosen = {key for key, _ in screened[:confirm_top]} | {key for key, z in screened if z >= confirm_screen_z}
    out = [Scored(key, z, zscore(res, seeds[key]) if key in chosen else None) for key, z in screened]
    return sorted(out, key=lambda s: -(s.z if s.z is not None else -1e9 + s.screen_z))
