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


def _alone(engine: BatchingEngine, prompt: str, tokens: int) -> list[int]:
    """The greedy tokens `generate` gives the prompt on its own."""
    import torch

    ids = _ids(engine, prompt)
    with torch.inference_mode():
        out = engine.model.generate(torch.tensor([ids]), max_new_tokens=tokens, do_sample=False, pad_token_id=0)
    return [int(t) for t in out[0, len(ids) :].tolist()]


def test_staggered_requests_get_the_tokens_generate_gives_them_alone(engine: BatchingEngine) -> None:
    reference = [_alone(engine, prompt, 24) for prompt in PROMPTS]
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


class Watched(Collector):
    """A collector that notes, when its generation ends, which of `others` had ended by then."""

    def __init__(self, *others: Collector) -> None:
        super().__init__()
        self.started = threading.Event()
        self.others = others
        self.others_done_at_end: list[bool] = []

    def __call__(self, event: Event) -> None:
        if event.done:
            self.others_done_at_end = [other.done.is_set() for other in self.others]
        super().__call__(event)
        self.started.set()


def test_a_row_whose_sampling_fails_ends_alone_while_the_batch_carries_on(engine: BatchingEngine) -> None:
    """Two healthy greedy requests and, staggered between them, two poisoned ones: a seed the
    generator refuses (it fails while being prefilled) and a NaN temperature (its probabilities
    are NaN, it fails while sampling, in the same batch as both healthy rows). The poisoned ones
    end with an error; the healthy ones get exactly the tokens `generate` gives them alone.
    Before, either failure ended every row of the batch with "the model failed"."""
    reference = [_alone(engine, prompt, 96) for prompt in PROMPTS[:2]]
    failed = engine.failed if hasattr(engine, "failed") else 0
    first, second = Watched(), Watched()
    bad_seed, nan = Watched(first), Watched(first, second)
    generations = [
        Generation(_ids(engine, PROMPTS[0]), Sampling(96, temperature=0, stop=("never-zzz",)), first),
        Generation(_ids(engine, PROMPTS[2]), Sampling(96, temperature=1.0, seed=2**70), bad_seed),
        Generation(_ids(engine, PROMPTS[1]), Sampling(96, temperature=0, stop=("never-zzz",)), second),
        Generation(_ids(engine, PROMPTS[3]), Sampling(96, temperature=float("nan")), nan),
    ]
    for generation, collector in zip(generations, (first, bad_seed, second, nan), strict=True):
        engine.submit(generation)
        assert collector.started.wait(60)  # staggered: each arrives while the earlier ones run
    for collector in (first, bad_seed, second, nan):
        assert collector.done.wait(120)
    for generation, collector, expected in zip(generations[::2], (first, second), reference, strict=True):
        last = collector.events[-1]
        assert last.finish_reason in ("stop", "length") and last.error is None
        assert generation.generated == expected[: len(generation.generated)]
        assert len(generation.generated) == 96 or generation.generated[-1] in engine.eos
    assert bad_seed.events[-1].finish_reason == "error" and "seed" in str(bad_seed.events[-1].error)
    assert nan.events[-1].finish_reason == "error" and "not numbers" in str(nan.events[-1].error)
    assert nan.others_done_at_end == [False, False]  # it failed inside a batch that carried on
    assert engine.failed == failed + 2 and engine.active == 0


def test_numerically_tiny_temperatures_sample_greedily(engine: BatchingEngine) -> None:
    """1e-40 overflows the scores divided by it to infinity (softmax: NaN); below 1e-5 the engine
    samples greedily, as at temperature 0. Before, such a request failed (and took its batch)."""
    expected = _alone(engine, PROMPTS[0], 16)
    for temperature in (1e-40, 5e-324, 9e-6):
        collector = Collector()
        generation = Generation(_ids(engine, PROMPTS[0]), Sampling(16, temperature=temperature, seed=7), collector)
        engine.submit(generation)
        assert collector.done.wait(60)
        assert collector.events[-1].finish_reason in ("stop", "length"), collector.events[-1].error
        assert generation.generated == expected[: len(generation.generated)]


def _reference_with_scores(engine: BatchingEngine, prompt: str, tokens: int, adjust: object) -> list[int]:
    """Greedy decoding step by step with the model alone, `adjust(scores, generated)` applied."""
    import torch

    ids = _ids(engine, prompt)
    generated: list[int] = []
    with torch.inference_mode():
        for _ in range(tokens):
            scores = engine.model(torch.tensor([ids + generated])).logits[0, -1].float()
            adjust(scores, generated)  # type: ignore[operator]
            token = int(scores.argmax())
            generated.append(token)
            if token in engine.eos:
                break
    return generated


def test_penalties_and_logit_bias_follow_openai_s_definitions(engine: BatchingEngine) -> None:
    """score[j] -= count[j] * frequency + (count[j] > 0) * presence; score[j] += bias[j]."""
    import torch

    def penalised(scores: torch.Tensor, generated: list[int]) -> None:
        counts = torch.bincount(torch.tensor(generated, dtype=torch.long), minlength=scores.shape[0]).float()
        scores -= counts * 1.5 + (counts > 0).float() * 0.5
        scores[7] += 3.0

    expected = _reference_with_scores(engine, PROMPTS[1], 20, penalised)
    assert expected != _alone(engine, PROMPTS[1], 20)  # the adjustments change the answer
    collector = Collector()
    sampling = Sampling(20, temperature=0, presence_penalty=0.5, frequency_penalty=1.5, logit_bias=((7, 3.0),))
    generation = Generation(_ids(engine, PROMPTS[1]), sampling, collector)
    engine.submit(generation)
    assert collector.done.wait(60)
    assert generation.generated == expected
    forced = Collector()
    chosen = Generation(_ids(engine, PROMPTS[0]), Sampling(5, temperature=1.0, logit_bias=((42, 100.0),)), forced)
    engine.submit(chosen)
    assert forced.done.wait(60) and chosen.generated == [42] * 5  # +100: that token, sampled or not
    beyond = Collector()
    engine.submit(Generation(_ids(engine, PROMPTS[0]), Sampling(5, logit_bias=((engine.vocab_size, 1.0),)), beyond))
    assert beyond.done.wait(60) and "beyond the model's" in str(beyond.events[-1].error)
