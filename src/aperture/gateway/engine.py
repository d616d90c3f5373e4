"""The embedded engine: a causal language model served in process with continuous batching.

Written here because no library does what the gateway needs on CPU with plain `transformers`:
vLLM and TGI need their own servers (and GPUs), and `generate` serves one fixed batch at a time.
The engine runs one thread that owns the model and a running batch:

- requests arrive on a queue; at every step the waiting ones are prefilled together (left-padded)
  and their keys and values are joined to the running batch's cache (left-padded to one length),
  so a new request starts at the next step instead of waiting for the batch to finish;
- each step samples one token for every row (greedy, or temperature/top-p with the request's own
  seeded generator, after the request's presence and frequency penalties and logit bias),
  detokenizes incrementally, checks stop strings, end of sequence and the token bound, and drops
  finished rows from the cache;
- a cancelled request (its client went away) is dropped at the next step, freeing its slot;
- a request whose own sampling fails (a seed the generator refuses, probabilities that are not
  finite numbers, a token id beyond the vocabulary) ends alone with an error event: the other
  rows of the batch carry on. Only a failure of the model itself ends the whole batch.

Tokens go back to the asyncio side through `loop.call_soon_threadsafe`. torch and transformers
are imported inside the functions only, so the CLI starts fast.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aperture.core.errors import InvalidInput

log = logging.getLogger("aperture.gateway.engine")


# Temperatures below this sample greedily. Dividing float32 scores by a numerically tiny
# temperature overflows them to infinity, and softmax then gives NaN; at such temperatures sampling
# is greedy in all but name anyway. vLLM draws the same line (`_SAMPLING_EPS` in its sampler).
GREEDY_BELOW = 1e-5


@dataclass(frozen=True, slots=True)
class Sampling:
    """How one request picks its tokens (OpenAI's meanings; the API range-checks every field)."""

    max_new_tokens: int
    temperature: float = 1.0  # below GREEDY_BELOW (0 included): greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0  # subtracted once from the score of every token generated so far
    frequency_penalty: float = 0.0  # subtracted per occurrence of a token generated so far
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its score)

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    @property
    def adjusts_scores(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.logit_bias)


@dataclass(frozen=True, slots=True)
class Event:
    """A piece of a generation: new text, and at the end the finish reason and token counts."""

    text: str
    finish_reason: str | None = None  # "stop", "length", or "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


@dataclass(eq=False)
class Generation:
    """One request inside the engine. `cancel()` may be called from any thread."""

    prompt_ids: list[int]
    sampling: Sampling
    emit: Callable[[Event], None]
    generated: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0
    cancelled: bool = False
    ended: bool = False  # its last event was emitted (finished, or failed alone)
    generator: Any = None
    counts: Any = None  # how often each token was generated (for the penalties)
    bias: Any = None  # (token ids, values) of the logit bias

    def cancel(self) -> None:
        self.cancelled = True


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def load_tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    _quiet_transformers()
    with contextlib.redirect_stderr(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class Tokens:
    """A model's tokenizer and chat template, for prompts and metering.

    Read straight from the model directory's `tokenizer.json` (the Rust `tokenizers` library) and
    its chat template (rendered with Jinja's sandbox, as `transformers` does): a gateway that only
    forwards to remote backends then never imports torch or transformers (about 300 MiB less per
    replica). Directories without `tokenizer.json` fall back to `transformers.AutoTokenizer`.
    """

    def __init__(self, encoder: Any, template: Any | None, specials: dict[str, str], fallback: Any = None) -> None:
        self._encoder = encoder
        self._template = template
        self._specials = specials
        self._fallback = fallback
        self.has_chat_template = template is not None or bool(getattr(fallback, "chat_template", None))

    @classmethod
    def from_directory(cls, model_dir: Path) -> Tokens:
        import json

        config_path = model_dir / "tokenizer_config.json"
        config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        if not (model_dir / "tokenizer.json").is_file():
            return cls(None, None, {}, fallback=load_tokenizer(model_dir))
        from tokenizers import Tokenizer

        encoder = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        source = config.get("chat_template")
        if (model_dir / "chat_template.jinja").is_file():
            source = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
        if isinstance(source, list):  # named templates: the default one
            source = next((t.get("template") for t in source if t.get("name") == "default"), None)
        specials = {}
        for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = config.get(name)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                specials[name] = value
        return cls(encoder, _compile_template(source) if isinstance(source, str) else None, specials)

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        if self._fallback is not None and self.has_chat_template:
            rendered = self._fallback.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
            return str(rendered)
        if self._template is None:
            return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        return str(self._template.render(messages=list(messages), add_generation_prompt=True, **self._specials))

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        if self._encoder is None:
            return list(self._fallback.encode(text, add_special_tokens=special))
        return list(self._encoder.encode(text, add_special_tokens=special).ids)

    def count(self, text: str) -> int:
        return len(self.encode(text)) if text else 0

    @property
    def vocab_size(self) -> int:
        """Token ids run from 0 to this, less one (added tokens included)."""
        if self._encoder is None:
            return len(self._fallback)
        return int(self._encoder.get_vocab_size(with_added_tokens=True))


def _compile_template(source: str) -> Any:
    """A chat template compiled the way `transformers` compiles it (sandboxed, trimmed blocks)."""
    import json

    from jinja2 import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(source)


class BatchingEngine:
    """One model, one thread, one running batch of at most `max_batch` rows."""

    def __init__(self, model_dir: Path, *, max_batch: int = 32, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        _quiet_transformers()
        if threads:
            torch.set_num_threads(threads)
        self.model_dir = model_dir
        self.max_batch = max_batch
        with contextlib.redirect_stderr(io.StringIO()):
            self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        self.model.eval()  # type: ignore[no-untyped-call]
        # The engine thread decodes with its own tokenizer: fast tokenizers refuse concurrent use.
        self.tokens = Tokens.from_directory(model_dir)
        self._decoder = load_tokenizer(model_dir)
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        eos: set[int] = set()
        for source in (getattr(self.model.generation_config, "eos_token_id", None), self._decoder.eos_token_id):
            if isinstance(source, int):
                eos.add(source)
            elif isinstance(source, list | tuple):
                eos.update(int(t) for t in source)
        self.eos = frozenset(eos)
        self.vocab_size = int(self.model.config.vocab_size)
        self._pending: deque[Generation] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        # The running batch (touched by the engine thread only).
        self._rows: list[Generation] = []
        self._cache: Any = None
        self._mask: Any = None
        self._logits: Any = None
        self.steps = 0
        self.peak_rows = 0
        self.cancelled = 0  # generations stopped because their client went away
        self.failed = 0  # generations ended alone because their own sampling failed

    # --- the asyncio side ---------------------------------------------------------------

    def submit(self, generation: Generation) -> None:
        total = len(generation.prompt_ids) + generation.sampling.max_new_tokens
        if total > self.max_length:
            raise InvalidInput(
                f"the prompt ({len(generation.prompt_ids)} tokens) and max_tokens "
                f"({generation.sampling.max_new_tokens}) exceed the model's context of {self.max_length} tokens",
                hint="shorten the messages or ask for fewer tokens",
                details={"code": "context_length_exceeded"},
            )
        with self._condition:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gateway-engine", daemon=True)
                self._thread.start()
            self._pending.append(generation)
            self._condition.notify()

    @property
    def active(self) -> int:
        """Rows generating now plus requests waiting (for tests and metrics)."""
        return len(self._rows) + len(self._pending)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # --- the engine thread --------------------------------------------------------------

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._condition:
                    while not self._closed and not self._pending and not self._rows:
                        self._condition.wait()
                    if self._closed:
                        break
                    room = self.max_batch - len(self._rows)
                    arrivals: list[Generation] = []
                    while self._pending and len(arrivals) < room:
                        arrivals.append(self._pending.popleft())
                try:
                    self.cancelled += sum(1 for g in arrivals if g.cancelled)
                    arrivals = [g for g in arrivals if not g.cancelled]
                    if arrivals:
                        self._prefill(arrivals)
                    if self._rows:
                        self._step()
                except Exception as error:  # the model itself failed: every row of the batch is lost
                    log.exception("the embedded engine failed a step")
                    for generation in [*self._rows, *arrivals]:
                        if not generation.ended:
                            self._end(generation, f"the model failed: {error}")
                    self._rows, self._cache, self._mask, self._logits = [], None, None, None
        for generation in [*self._rows, *self._pending]:
            self._end(generation, "the engine stopped")

    def _end(self, generation: Generation, message: str) -> None:
        """End one generation with an error event (its client gets a 500); never raises."""
        generation.ended = True
        try:
            generation.emit(
                Event(
                    "",
                    "error",
                    prompt_tokens=len(generation.prompt_ids),
                    completion_tokens=len(generation.generated),
                    error=message,
                )
            )
        except Exception as error:  # its event loop is gone: nobody is waiting for it
            log.warning("could not tell a generation that it failed: %s", error)

    def _fail(self, generation: Generation, message: str) -> None:
        """One request's own sampling failed: it ends alone, the batch carries on."""
        self.failed += 1
        log.warning("the embedded engine ended one request: %s", message)
        self._end(generation, message)

    def _prepare(self, generation: Generation) -> None:
        """The request's generator, token counts and bias; raises what makes it unservable."""
        import torch

        sampling = generation.sampling
        if not sampling.greedy and sampling.seed is not None:
            try:
                generation.generator = torch.Generator().manual_seed(sampling.seed)
            except (RuntimeError, ValueError, OverflowError) as error:
                raise ValueError(f"the seed {sampling.seed} cannot seed the generator ({error})") from None
        if sampling.presence_penalty or sampling.frequency_penalty:
            generation.counts = torch.zeros(self.vocab_size, dtype=torch.float32)
        if sampling.logit_bias:
            ids = [token for token, _ in sampling.logit_bias]
            beyond = [token for token in ids if not 0 <= token < self.vocab_size]
            if beyond:
                raise ValueError(f"logit_bias names token {beyond[0]}, beyond the model's {self.vocab_size} tokens")
            generation.bias = (
                torch.tensor(ids, dtype=torch.long),
                torch.tensor([value for _, value in sampling.logit_bias], dtype=torch.float32),
            )

    def _prefill(self, arrivals: list[Generation]) -> None:
        import torch
        from transformers import DynamicCache

        ready = []
        for generation in arrivals:
            try:
                self._prepare(generation)
            except Exception as error:
                self._fail(generation, str(error))
            else:
                ready.append(generation)
        arrivals = ready
        if not arrivals:
            return
        width = max(len(g.prompt_ids) for g in arrivals)
        pad = int(self._decoder.pad_token_id)
        ids = torch.full((len(arrivals), width), pad, dtype=torch.long)
        mask = torch.zeros((len(arrivals), width), dtype=torch.long)
        for row, generation in enumerate(arrivals):
            n = len(generation.prompt_ids)
            ids[row, width - n :] = torch.tensor(generation.prompt_ids, dtype=torch.long)
            mask[row, width - n :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
        )
        logits = out.logits[:, -1, :]
        if not self._rows:
            self._rows, self._cache, self._mask, self._logits = list(arrivals), cache, mask, logits
        else:
            length = max(self._mask.shape[1], width)
            self._cache = _join_caches(self._cache, self._mask.shape[1], cache, width, length)
            self._mask = torch.cat([_left_pad(self._mask, length), _left_pad(mask, length)], dim=0)
            self._logits = torch.cat([self._logits, logits], dim=0)
            self._rows.extend(arrivals)
        self.peak_rows = max(self.peak_rows, len(self._rows))

    def _step(self) -> None:
        import torch

        chosen = self._sample()
        keep: list[int] = []
        for row, (generation, token) in enumerate(zip(self._rows, chosen, strict=True)):
            if token is None:  # its sampling failed: it has ended alone
                continue
            try:
                alive = self._advance(generation, token)
            except Exception as error:  # decoding or handing its text over failed: this row only
                self._fail(generation, f"its text could not be produced ({error})")
                continue
            if alive:
                keep.append(row)
        self.steps += 1
        if not keep:
            self._rows, self._cache, self._mask, self._logits = [], None, None, None
            return
        tokens = torch.tensor([[chosen[row] or 0] for row in keep], dtype=torch.long)
        if len(keep) < len(self._rows):
            index = torch.tensor(keep, dtype=torch.long)
            self._cache.batch_select_indices(index)
            self._mask = self._mask[index]
            self._rows = [self._rows[row] for row in keep]
            # Columns no remaining row uses (all padding) are dropped: the cache stays compact.
            used = int(self._mask.any(dim=0).int().argmax())
            if used > 0:
                self._mask = self._mask[:, used:]
                for layer in self._cache.layers:
                    layer.keys = layer.keys[:, :, used:, :]
                    layer.values = layer.values[:, :, used:, :]
        self._mask = torch.cat([self._mask, torch.ones((len(keep), 1), dtype=self._mask.dtype)], dim=1)
        positions = self._mask.sum(dim=1, keepdim=True) - 1
        out = self.model(
            input_ids=tokens, attention_mask=self._mask, position_ids=positions, cache=self._cache, use_cache=True
        )
        self._logits = out.logits[:, -1, :]

    def _sample(self) -> list[int | None]:
        """One token per row; None for a row whose sampling failed (ended alone, with an error)."""
        import torch

        logits = self._logits.float()
        rows = self._rows
        if any(g.sampling.adjusts_scores for g in rows):
            logits = logits.clone()
            for row, generation in enumerate(rows):
                if generation.sampling.adjusts_scores and not generation.cancelled:
                    self._adjust(logits[row], generation)
        finite = torch.isfinite(logits).all(dim=-1).tolist()
        chosen: list[int | None] = [int(t) for t in logits.argmax(dim=-1).tolist()]
        for row, generation in enumerate(rows):
            if generation.cancelled:
                continue  # dropped by _advance
            sampling = generation.sampling
            try:
                if not finite[row]:
                    raise ValueError("the model's scores for this request are not finite numbers")
                if sampling.greedy:
                    continue
                probs = torch.softmax(logits[row] / sampling.temperature, dim=-1)
                if sampling.top_p < 1.0:
                    ordered, order = probs.sort(descending=True)
                    outside = ordered.cumsum(-1) - ordered > sampling.top_p
                    ordered[outside] = 0.0
                    probs = torch.zeros_like(probs).scatter(0, order, ordered)
                if not bool(torch.isfinite(probs).all()):
                    raise ValueError(f"temperature {sampling.temperature} gives probabilities that are not numbers")
                chosen[row] = int(torch.multinomial(probs, 1, generator=generation.generator).item())
            except Exception as error:
                chosen[row] = None
                self._fail(generation, f"sampling failed: {error}")
        return chosen

    @staticmethod
    def _adjust(scores: Any, generation: Generation) -> None:
        """OpenAI's penalties and logit bias, in place on one row's scores."""
        sampling = generation.sampling
        if generation.counts is not None:
            counts = generation.counts
            scores -= counts * sampling.frequency_penalty + (counts > 0).to(scores.dtype) * sampling.presence_penalty
        if generation.bias is not None:
            ids, values = generation.bias
            scores.index_add_(0, ids, values)

    def _advance(self, generation: Generation, token: int) -> bool:
        """Take one token; emit what is new; False when the generation is over."""
        if generation.cancelled:
            self.cancelled += 1
            return False
        sampling = generation.sampling
        if generation.counts is not None:
            generation.counts[token] += 1
        finish: str | None = None
        if token in self.eos:
            finish = "stop"
            generation.generated.append(token)
        else:
            generation.generated.append(token)
            text = str(
                self._decoder.decode([t for t in generation.generated if t not in self.eos], skip_special_tokens=True)
            )
            generation.text = text
            if sampling.stop:
                start = max(0, generation.sent - max(len(s) for s in sampling.stop))
                hits = [i for i in (text.find(s, start) for s in sampling.stop) if i >= 0]
                if hits:
                    generation.text = text[: min(hits)]
                    finish = "stop"
            if finish is None and len(generation.generated) >= sampling.max_new_tokens:
                finish = "length"
        text = generation.text
        if finish is None:
            # Hold back a broken multi-byte character and what could still become a stop string.
            ready = len(text.rstrip("\ufffd"))
            if sampling.stop:
                ready = min(ready, len(text) - max(len(s) for s in sampling.stop) + 1)
            if ready > generation.sent:
                generation.emit(Event(text[generation.sent : ready]))
                generation.sent = ready
            return True
        generation.ended = True
        generation.emit(
            Event(
                text[generation.sent :],
                finish,
                prompt_tokens=len(generation.prompt_ids),
                completion_tokens=len(generation.generated),
            )
        )
        generation.sent = len(text)
        return False


def _left_pad(tensor: Any, length: int) -> Any:
    import torch.nn.functional as functional

    missing = length - tensor.shape[1]
    return tensor if missing == 0 else functional.pad(tensor, (missing, 0), value=0)


def _join_caches(running: Any, running_length: int, arrived: Any, arrived_length: int, length: int) -> Any:
    """The running batch's cache with the arrivals' rows appended, both left-padded to `length`."""
    import torch
    import torch.nn.functional as functional

    def padded(tensor: Any, have: int) -> Any:
        return tensor if have == length else functional.pad(tensor, (0, 0, length - have, 0), value=0.0)

    for mine, theirs in zip(running.layers, arrived.layers, strict=True):
        mine.keys = torch.cat([padded(mine.keys, running_length), padded(theirs.keys, arrived_length)], dim=0)
        mine.values = torch.cat([padded(mine.values, running_length), padded(theirs.values, arrived_length)], dim=0)
    return running
