"""The classifier hook of the safety layer: a remote moderation endpoint or a local model.

- `openai:URL#MODEL`: an OpenAI-compatible `POST URL/moderations` (`{"model", "input"}` ->
  `{"results": [{"flagged", "categories"}]}`);
- `model:DIR#LABEL,LABEL`: a local `transformers` text-classification model; the text is flagged
  when the top label is one of the labels named.

The keyword/regex rules (domain.CompiledRules) run first; the classifier only sees text they let
through.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
from pathlib import Path
from typing import Protocol

from aperture.core.errors import InvalidInput
from aperture.gateway.backends import BackendFailed, Clients, failures

CLASSIFIER_HINT = "use `openai:http://host:port/v1#moderation-model` or `model:/path/to/classifier#label,label`"


class Classifier(Protocol):
    async def flagged(self, text: str) -> str | None:
        """The category that flagged the text, or None."""
        ...


class ModerationEndpoint:
    def __init__(self, clients: Clients, url: str, model: str, timeout_s: float = 10.0) -> None:
        self.clients, self.url, self.model, self.timeout_s = clients, url.rstrip("/"), model, timeout_s

    async def flagged(self, text: str) -> str | None:
        import aiohttp

        refused: tuple[type[BaseException], ...] = (*failures(), ValueError, KeyError, IndexError, TypeError)
        try:
            async with self.clients.get().post(
                self.url + "/moderations",
                json={"model": self.model, "input": text},
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as response:
                response.raise_for_status()
                result = json.loads(await response.read())["results"][0]
        except refused as error:
            # Fail closed: text nobody could check is not passed on.
            raise BackendFailed(
                f"the moderation endpoint at {self.url} failed ({type(error).__name__})",
                hint="retry later, or tell the operator",
            ) from None
        if not result.get("flagged"):
            return None
        categories = sorted(name for name, hit in (result.get("categories") or {}).items() if hit)
        return "classifier:" + (",".join(categories) or "flagged")


class LocalClassifier:
    def __init__(self, directory: Path, labels: frozenset[str]) -> None:
        from transformers import pipeline

        with contextlib.redirect_stderr(io.StringIO()):
            self._pipeline = pipeline("text-classification", model=str(directory), device="cpu")
        self.labels = labels
        self._lock = threading.Lock()  # one call at a time: the tokenizer refuses concurrent use

    def _classify(self, text: str) -> str | None:
        with self._lock:
            top = self._pipeline(text[:4000], truncation=True)[0]
        label = str(top["label"])
        return f"classifier:{label}" if label in self.labels else None

    async def flagged(self, text: str) -> str | None:
        return await asyncio.to_thread(self._classify, text)


def parse_classifier(spec: str) -> tuple[str, str, str]:
    """`openai:URL#MODEL` or `model:DIR#LABELS` -> (kind, target, extra), or a clear error."""
    kind, _, rest = spec.partition(":")
    target, _, extra = rest.partition("#")
    if kind == "openai" and target.startswith(("http://", "https://")) and extra:
        return kind, target, extra
    if kind == "model" and target and extra:
        if not (Path(target) / "config.json").is_file():
            raise InvalidInput(f"classifier model directory {target} has no config.json", hint=CLASSIFIER_HINT)
        return kind, target, extra
    raise InvalidInput(f"classifier {spec!r} is not understood", hint=CLASSIFIER_HINT)


def build_classifier(spec: str, clients: Clients) -> Classifier:
    kind, target, extra = parse_classifier(spec)
    if kind == "openai":
        return ModerationEndpoint(clients, target, extra)
    return LocalClassifier(Path(target), frozenset(label.strip() for label in extra.split(",") if label.strip()))
