"""The in-process engine: same scores as lm-evaluation-harness, bounded generation."""

from __future__ import annotations

from pathlib import Path

import pytest

from aperture.risk.datasets import DataDirectory
from aperture.risk.domain import SUITES, MultipleChoiceItem, multiple_choice_context, multiple_choice_continuations
from aperture.risk.engine import ChoiceRequest, GenerationRequest, TransformersEngine
from aperture.testing.lm_eval_reference import run_lm_eval


def _wmdp_sample(count: int) -> list[MultipleChoiceItem]:
    items, _ = DataDirectory().load_suite(SUITES["wmdp-bio"])
    return [item for item in items if isinstance(item, MultipleChoiceItem)][:count]


@pytest.mark.slow
def test_scores_match_lm_evaluation_harness(tiny_model_dir: Path, tmp_path: Path) -> None:
    items = _wmdp_sample(24)
    header = SUITES["wmdp-bio"].header
    reference = run_lm_eval(tiny_model_dir, items, header, tmp_path / "lm-eval", batch_size=4)
    engine = TransformersEngine(tiny_model_dir, batch_tokens=512)
    ours = engine.loglikelihoods(
        [ChoiceRequest(multiple_choice_context(header, i), multiple_choice_continuations(i)) for i in items]
    )
    for mine, theirs in zip(ours, reference.loglikelihoods, strict=True):
        assert mine == pytest.approx(theirs, abs=2e-4)
    accuracy = sum(max(range(4), key=lambda k: s[k]) == i.answer for s, i in zip(ours, items, strict=True)) / len(items)
    assert accuracy == pytest.approx(reference.accuracy)


def test_multi_token_choices_take_the_general_path(tiny_model_dir: Path) -> None:
    """Choices longer than one token are scored as whole sequences; batching does not change scores."""
    engine = TransformersEngine(tiny_model_dir, batch_tokens=64)
    request = ChoiceRequest("The capital of France is", (" Paris", " a city in Europe", " Lyon"))
    batched = engine.loglikelihoods([request, ChoiceRequest("Question: 2+2=\nAnswer:", (" A", " B"))])
    alone = engine.loglikelihoods([request])
    assert batched[0] == pytest.approx(alone[0], abs=1e-5)
    assert len(batched[0]) == 3 and len(batched[1]) == 2
    assert all(score < 0 for score in batched[0])


def test_generation_is_bounded(tiny_model_dir: Path) -> None:
    """A random model never stops by itself: the token bound ends it and says so."""
    engine = TransformersEngine(tiny_model_dir)
    results = engine.generate(
        [GenerationRequest((("user", "Hello"),)), GenerationRequest((("user", "A much longer question, please"),))],
        max_new_tokens=7,
        time_limit_s=30,
    )
    assert len(results) == 2
    for result in results:
        assert result.new_tokens <= 7
        assert result.truncated or result.new_tokens < 7
