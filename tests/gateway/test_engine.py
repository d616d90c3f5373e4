"""The embedded engine on a tiny random Llama: continuous batching gives each request exactly the
tokens `generate` gives it alone, whenever it arrives; stop strings, cancellation, context bounds;
and the light tokenizer renders and counts exactly as transformers does."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aperture.core.errors import InvalidInput
from aperture.gateway.engine import BatchingEngine, Event, Generation, Sampling, Tokens

PROMPTS = ("Hello there, how are you?", "What is the capital of France? Answer briefly.", "Tell me a joke", "x")


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> BatchingEngine:
    found = BatchingEngine(tiny_model_dir, max_batch=3, threads=1)
    yield found  # type: ignore[misc]
    found.close()


class Collector:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.done = threading.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if event.done:
            self.done.set()

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events)


def _ids(engine: BatchingEngine, prompt: str) -> list[int]:
    return engine.tokens.encode(engine.tokens.chat_prompt([{"role": "user", "content": prompt}]))


def test_staggered_requests_get_the_tokens_generate_gives_them_alone(engine: BatchingEngine) -> None:
    import torch

    reference = []
    for prompt in PROMPTS:
        ids = _ids(engine, prompt)
        with torch.inference_mode():
            out = engine.model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, pad_token_id=0)
        reference.append(out[0, len(ids) :].tolist())
    collectors, generations = [], []
    for index, prompt in enumerate(PROMPTS):  # more requests than rows: the fourth waits for a slot
        collector = Collector()
        generation = Generation(_ids(engine, prompt), Sampling(24, temperature=0), collector)
        engine.submit(generation)
        collectors.append(collector)
        generations.append(generation)
        time.sleep(0.01 * index)
    for collector in collectors:
        assert collector.done.wait(60)
    for generation, expected, collector in zip(generations, reference, collectors, strict=True):
        assert generation.generated == expected[: len(generation.generated)]
        last = collector.events[-1]
        assert last.completion_tokens == len(generation.generated) and last.prompt_tokens == len(generation.prompt_ids)
    assert 1 < engine.peak_rows <= 3


def test_stop_strings_cut_the_text_and_are_never_sent(engine: BatchingEngine) -> None:
    first = Collector()
    engine.submit(Generation(_ids(engine, PROMPTS[2]), Sampling(30, temperature=1.0, seed=3), first))
    assert first.done.wait(60)
    text = first.text
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop.strip(), text
    second = Collector()
    engine.submit(Generation(_ids(engine, PROMPTS[2]), Sampling(30, temperature=1.0, seed=3, stop=(stop,)), second))
    assert second.done.wait(60)
    assert second.text == text[: text.index(stop)] and second.events[-1].finish_reason == "stop"


def test_a_cancelled_generation_frees_its_row(engine: BatchingEngine) -> None:
    collector = Collector()
    generation = Generation(_ids(engine, PROMPTS[0]), Sampling(400, temperature=0), collector)
    before = engine.cancelled
    engine.submit(generation)
    while not collector.events:
        time.sleep(0.001)
    generation.cancel()
    deadline = time.monotonic() + 10
    while engine.active and time.monotonic() < deadline:
        time.sleep(0.005)
    assert engine.active == 0 and engine.cancelled == before + 1 and len(generation.generated) < 400


def test_prompts_beyond_the_context_are_refused(engine: BatchingEngine) -> None:
    with pytest.raises(InvalidInput) as error:
        engine.submit(Generation([1] * 500, Sampling(100), Collector()))
    assert error.value.details["code"] == "context_length_exceeded"


def test_the_light_tokenizer_matches_transformers(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    light = Tokens.from_directory(tiny_model_dir)
    conversations = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Zürich? «quotes» 🙂"}],
        [
            {"role": "user", "content": "One"},
            {"role": "assistant", "content": "Two"},
            {"role": "user", "content": "Three\nlines"},
        ],
    ]
    for messages in conversations:
        expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert light.chat_prompt(messages) == expected
        assert light.encode(expected) == reference.encode(expected, add_special_tokens=False)
    assert light.count("The quick brown fox") == len(reference.encode("The quick brown fox", add_special_tokens=False))
    assert light.count("") == 0
