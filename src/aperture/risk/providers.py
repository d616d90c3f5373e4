"""How the service gets engines, judges and (optionally) Ray workers: built from Settings at the root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aperture.core.errors import InvalidInput
from aperture.risk.datasets import DataDirectory
from aperture.risk.engine import Engine, OpenAIEngine, TransformersEngine
from aperture.risk.scoring import Judge, RubricJudge, RuleJudge

RUBRIC_FILE = "strongreject/judge_rubric.txt"
JUDGE_HINT = "use `rules`, `model:/path/to/hf-model-dir` or `openai:http://host:port/v1#model-name`"


def parse_openai_spec(spec: str, what: str, hint: str) -> tuple[str, str]:
    """`openai:<base url>#<model>` -> (base url, model), or a clear error."""
    url, _, model = spec.removeprefix("openai:").partition("#")
    if not spec.startswith("openai:") or not url.startswith(("http://", "https://")) or not model:
        raise InvalidInput(f"{what} {spec!r} is not understood: it needs an http(s) URL and '#model'", hint=hint)
    return url, model


ENGINE_HINT = "use `local` (the version's weights here) or `openai:http://host:port/v1#served-model-name`"


def openai_engine(spec: str) -> OpenAIEngine:
    return OpenAIEngine(*parse_openai_spec(spec, "engine", ENGINE_HINT))


def transformers_engine_provider(batch_tokens: int, threads: int) -> Callable[[Path, str], Engine]:
    def provide(model_dir: Path, model_digest: str) -> Engine:
        return TransformersEngine(
            model_dir, batch_tokens=batch_tokens, threads=threads or None, model_digest=model_digest
        )

    return provide


def judge_provider(data: DataDirectory, engine_provider: Callable[[Path, str], Engine]) -> Callable[[str], Judge]:
    """`rules` (default), `model:<directory>` (a local model as StrongREJECT rubric judge) or
    `openai:<base url>#<model>` (an OpenAI-compatible endpoint as rubric judge)."""

    def provide(spec: str) -> Judge:
        if spec == "rules":
            return RuleJudge()
        kind, _, target = spec.partition(":")
        if not target:
            raise InvalidInput(f"judge {spec!r} is not understood", hint=JUDGE_HINT)
        rubric = data.read(RUBRIC_FILE).text
        if kind == "model":
            directory = Path(target)
            if not (directory / "config.json").is_file():
                raise InvalidInput(f"judge model directory {target} has no config.json", hint=JUDGE_HINT)
            return RubricJudge(engine_provider(directory, "judge"), rubric, directory.name)
        if kind == "openai":
            url, model = parse_openai_spec(spec, "judge", JUDGE_HINT)
            return RubricJudge(OpenAIEngine(url, model), rubric, model)
        raise InvalidInput(f"judge kind {kind!r} is not known", hint=JUDGE_HINT)

    return provide


def validate_engine_spec(spec: str) -> None:
    if spec != "local":
        parse_openai_spec(spec, "engine", ENGINE_HINT)


def validate_judge_spec(spec: str) -> None:
    """Check a judge spec before a run is recorded (without loading the judge)."""
    if spec == "rules":
        return
    kind, _, target = spec.partition(":")
    if kind not in ("model", "openai") or not target:
        raise InvalidInput(f"judge {spec!r} is not understood", hint=JUDGE_HINT)
    if kind == "model" and not (Path(target) / "config.json").is_file():
        raise InvalidInput(f"judge model directory {target} has no config.json", hint=JUDGE_HINT)
    if kind == "openai":
        parse_openai_spec(spec, "judge", JUDGE_HINT)
