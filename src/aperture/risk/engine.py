"""Evaluation engines: score choices by loglikelihood and generate answers, in process or remotely.

`TransformersEngine` is the fast path, written here because no library scores multiple-choice
suites the way we need (lm-evaluation-harness computes the vocabulary projection and a
log-softmax at every position of every sequence; we need them at one position per question):

- pairs are tokenized exactly as lm-evaluation-harness does (context and continuation encoded
  whole, then split), so the scores are the same numbers;
- when every choice is one token that extends the context, the context is run once and the
  four choices are read off the last position (one forward pass per question);
- the language-model head and log-softmax run only at the positions that are scored;
- requests are sorted by length and batched under a token budget, so padding stays small.

`OpenAIEngine` talks to an OpenAI-compatible server (vLLM with prompt logprobs, or Aperture's
own gateway): `/v1/completions` with `echo` and `logprobs` for loglikelihoods, and
`/v1/chat/completions` for generation. torch and transformers are imported inside the
functions only, so the CLI starts fast.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aperture.core.errors import InvalidInput, Unavailable


@dataclass(frozen=True, slots=True)
class ChoiceRequest:
    context: str
    continuations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content)


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    new_tokens: int
    truncated: bool  # stopped by the token or time bound, not by the model


class Engine(Protocol):
    def describe(self) -> dict[str, Any]: ...

    def loglikelihoods(self, requests: Sequence[ChoiceRequest]) -> list[tuple[float, ...]]: ...

    def generate(
        self, requests: Sequence[GenerationRequest], max_new_tokens: int, time_limit_s: float
    ) -> list[Generation]: ...

    def close(self) -> None: ...


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]


class TransformersEngine:
    """A causal language model from a Hugging Face directory, run in this process on CPU or GPU."""

    def __init__(
        self,
        model_dir: Path,
        *,
        batch_tokens: int = 4096,
        max_batch: int = 64,
        device: str | None = None,
        threads: int | None = None,
        model_digest: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _quiet_transformers()
        if threads:
            torch.set_num_threads(threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model_dir = model_dir
        self.model_digest = model_digest
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        with contextlib.redirect_stderr(io.StringIO()):
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        self.model.to(self.device).eval()  # type: ignore[arg-type]
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self.parameters = sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "engine": "transformers",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "device": self.device,
            "dtype": "float32",
            "model_digest": self.model_digest,
            "tokenizer": type(self.tokenizer).__name__,
        }

    def close(self) -> None:
        del self.model

    # --- loglikelihood ----------------------------------------------------------------

    def _encode_pairs(self, requests: Sequence[ChoiceRequest]) -> list[tuple[list[int], list[list[int]]]]:
        """lm-evaluation-harness's `_encode_pair`: trailing context spaces move to the continuation;
        the whole string is encoded and split at the context's token count."""
        contexts: list[str] = []
        wholes: list[str] = []
        for request in requests:
            if not request.context:
                raise InvalidInput("a multiple-choice context is empty", hint="check the suite's data file")
            # Trailing spaces belong to the continuation; the whole string is the same either way.
            contexts.append(request.context.rstrip())
            wholes.extend(request.context + continuation for continuation in request.continuations)
        context_ids = self.tokenizer(contexts)["input_ids"]
        whole_ids = self.tokenizer(wholes)["input_ids"]
        pairs = []
        position = 0
        for request, context_enc in zip(requests, context_ids, strict=True):
            continuations = []
            for _ in request.continuations:
                whole = whole_ids[position]
                position += 1
                continuations.append(list(whole[len(context_enc) :]))
            pairs.append((list(context_enc), continuations))
        return pairs

    def loglikelihoods(self, requests: Sequence[ChoiceRequest]) -> list[tuple[float, ...]]:
        import torch

        pairs = self._encode_pairs(requests)
        # Each scoring job: input tokens, and for each continuation the (position, token) pairs it sums.
        jobs: list[tuple[list[int], list[list[tuple[int, int]]]]] = []
        request_jobs: list[range] = []  # which jobs score each request, in choice order
        for context_enc, continuations in pairs:
            first_job = len(jobs)
            if all(len(c) == 1 for c in continuations):
                # One forward pass scores every single-token choice at the context's last position.
                last = len(context_enc) - 1
                jobs.append((context_enc, [[(last, c[0])] for c in continuations]))
                request_jobs.append(range(first_job, len(jobs)))
                continue
            for continuation in continuations:  # the general path: one sequence per choice
                if not continuation:
                    raise InvalidInput("a choice encodes to no tokens", hint="check the suite's choices")
                tokens = context_enc + continuation
                start = len(context_enc) - 1
                jobs.append((tokens[:-1], [[(start + i, t) for i, t in enumerate(continuation)]]))
            request_jobs.append(range(first_job, len(jobs)))
        scores: list[list[float]] = [[] for _ in jobs]
        order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][0]))
        with torch.inference_mode():
            prefix = self._shared_prefix(jobs)
            lengths = [len(jobs[i][0]) - len(prefix[0]) if prefix else len(jobs[i][0]) for i in range(len(jobs))]
            for batch in self._batches(order, lengths):
                self._score_batch([jobs[i] for i in batch], [scores[i] for i in batch], prefix)
        return [tuple(value for job in owned for value in scores[job]) for owned in request_jobs]

    def _batches(self, order: Sequence[int], lengths: Sequence[int]) -> list[list[int]]:
        """Longest first, each batch under the token budget (rows x longest row)."""
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            longest = lengths[current[0]] if current else lengths[index]
            if current and ((len(current) + 1) * longest > self.batch_tokens or len(current) >= self.max_batch):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    def _shared_prefix(
        self, jobs: Sequence[tuple[list[int], list[list[tuple[int, int]]]]]
    ) -> tuple[list[int], Any] | None:
        """The tokens every job starts with (a suite's task description), run once and cached.

        Each batch then runs only its rows' own tokens on a copy of the prefix's keys and values.
        Used when the prefix is long enough to matter, nothing needs truncating, and every scored
        position lies after it.
        """
        from transformers import DynamicCache

        if len(jobs) < 2 or any(len(tokens) > self.max_length for tokens, _ in jobs):
            return None
        first = jobs[0][0]
        shared = min(len(tokens) for tokens, _ in jobs) - 1
        for tokens, _ in jobs[1:]:
            limit = 0
            while limit < shared and tokens[limit] == first[limit]:
                limit += 1
            shared = limit
        earliest = min(position for _, continuations in jobs for c in continuations for position, _ in c)
        shared = min(shared, earliest)
        if shared < 4:
            return None
        import torch

        cache = DynamicCache()
        ids = torch.tensor([first[:shared]], device=self.device)
        self.model.model(input_ids=ids, cache=cache, use_cache=True)
        return first[:shared], cache

    def _score_batch(
        self,
        jobs: Sequence[tuple[list[int], list[list[tuple[int, int]]]]],
        outputs: Sequence[list[float]],
        prefix: tuple[list[int], Any] | None = None,
    ) -> None:
        import copy

        import torch

        if prefix is not None:
            skip = len(prefix[0])
            jobs = [
                (tokens[skip:], [[(position - skip, token) for position, token in c] for c in continuations])
                for tokens, continuations in jobs
            ]
        limit = self.max_length
        width = min(limit, max(len(tokens) for tokens, _ in jobs))
        pad = int(self.tokenizer.pad_token_id)
        input_ids = torch.full((len(jobs), width), pad, dtype=torch.long)
        attention = torch.zeros((len(jobs), width), dtype=torch.long)
        rows: list[int] = []
        positions: list[int] = []
        tokens_at: list[int] = []
        for row, (tokens, continuations) in enumerate(jobs):
            shift = max(0, len(tokens) - limit)  # left-truncate, as lm-evaluation-harness does
            kept = tokens[shift:]
            input_ids[row, : len(kept)] = torch.tensor(kept)
            attention[row, : len(kept)] = 1
            for continuation in continuations:
                for position, token in continuation:
                    rows.append(row)
                    positions.append(position - shift)
                    tokens_at.append(token)
        input_ids = input_ids.to(self.device)
        attention = attention.to(self.device)
        if prefix is None:
            hidden = self.model.model(input_ids=input_ids, attention_mask=attention, use_cache=False).last_hidden_state
        else:
            cache = copy.deepcopy(prefix[1])
            cache.batch_repeat_interleave(len(jobs))
            ones = torch.ones((len(jobs), len(prefix[0])), dtype=attention.dtype, device=self.device)
            hidden = self.model.model(
                input_ids=input_ids,
                attention_mask=torch.cat([ones, attention], dim=1),
                cache=cache,
                use_cache=True,
            ).last_hidden_state
        picked = hidden[torch.tensor(rows, device=self.device), torch.tensor(positions, device=self.device)]
        logprobs = torch.log_softmax(self.model.lm_head(picked).float(), dim=-1)
        values = logprobs[torch.arange(len(rows), device=self.device), torch.tensor(tokens_at, device=self.device)]
        values_list = values.tolist()
        cursor = 0
        for (_, continuations), output in zip(jobs, outputs, strict=True):
            for continuation in continuations:
                output.append(float(sum(values_list[cursor : cursor + len(continuation)])))
                cursor += len(continuation)

    # --- generation -------------------------------------------------------------------

    def chat_prompt(self, request: GenerationRequest) -> str:
        messages = [{"role": role, "content": content} for role, content in request.messages]
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def generate(
        self, requests: Sequence[GenerationRequest], max_new_tokens: int, time_limit_s: float = 120.0
    ) -> list[Generation]:
        """Greedy, batched, left-padded; bounded by `max_new_tokens` and a wall-clock limit per batch."""
        import torch

        if not requests:
            return []
        prompts = [self.chat_prompt(request) for request in requests]
        self.tokenizer.padding_side = "left"
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        input_ids = encoded["input_ids"][:, -self.max_length + max_new_tokens :].to(self.device)
        attention = encoded["attention_mask"][:, -self.max_length + max_new_tokens :].to(self.device)
        eos = self.tokenizer.eos_token_id
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                max_time=time_limit_s,
            )
        results = []
        new = output[:, input_ids.shape[1] :]
        for row in new.tolist():
            ended = eos in row
            kept = row[: row.index(eos)] if ended else [t for t in row if t != self.tokenizer.pad_token_id]
            text = str(self.tokenizer.decode(kept, skip_special_tokens=True))
            results.append(Generation(text.strip(), len(kept), not ended))
        return results


class OpenAIEngine:
    """An OpenAI-compatible server: vLLM (`--enable-prompt-logprobs` not needed: echo works), or another."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout_s: float = 120.0) -> None:
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"engine URL {base_url!r} is not http(s)", hint="e.g. http://127.0.0.1:8001/v1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def describe(self) -> dict[str, Any]:
        return {"engine": "openai-compatible", "base_url": self.base_url, "model": self.model}

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as error:
            raise Unavailable(
                f"the engine at {self.base_url} cannot be reached: {error}", hint="is it running?"
            ) from None
        if response.status_code >= 400:
            raise Unavailable(
                f"the engine at {self.base_url} answered {response.status_code}: {response.text[:300]}",
                hint="check the engine's model name and that it supports this request",
            )
        data: dict[str, Any] = response.json()
        return data

    def loglikelihoods(self, requests: Sequence[ChoiceRequest]) -> list[tuple[float, ...]]:
        """Prompt logprobs of context + continuation (echo, zero new tokens), summed over the continuation."""
        prompts = [(r.context, c) for r in requests for c in r.continuations]
        data = self._post(
            "/completions",
            {"model": self.model, "prompt": [c + k for c, k in prompts], "max_tokens": 0, "echo": True, "logprobs": 1},
        )
        choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != len(prompts):
            raise Unavailable("the engine returned the wrong number of completions", hint="is it OpenAI-compatible?")
        sums: list[float] = []
        for (context, _), choice in zip(prompts, choices, strict=True):
            logprobs = choice.get("logprobs") or {}
            offsets, values = logprobs.get("text_offset") or [], logprobs.get("token_logprobs") or []
            total = sum(v for o, v in zip(offsets, values, strict=False) if o >= len(context) and v is not None)
            sums.append(float(total))
        results = []
        cursor = 0
        for request in requests:
            results.append(tuple(sums[cursor : cursor + len(request.continuations)]))
            cursor += len(request.continuations)
        return results

    def generate(
        self, requests: Sequence[GenerationRequest], max_new_tokens: int, time_limit_s: float = 120.0
    ) -> list[Generation]:
        results = []
        for request in requests:
            started = time.monotonic()
            data = self._post(
                "/chat/completions",
                {
                    "model": self.model,
                    "messages": [{"role": r, "content": c} for r, c in request.messages],
                    "max_tokens": max_new_tokens,
                    "temperature": 0,
                },
            )
            choice = (data.get("choices") or [{}])[0]
            text = str((choice.get("message") or {}).get("content") or "")
            tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
            truncated = choice.get("finish_reason") == "length" or time.monotonic() - started > time_limit_s
            results.append(Generation(text.strip(), tokens, truncated))
        return results
