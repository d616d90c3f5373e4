"""The safety layer: keyword and pattern checks on input and output, a moderation endpoint as
classifier, blocked requests refused, metered and kept as evidence, and alerts for repeated blocks."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import openai
import pytest

from aperture.access.domain import SYSTEM
from aperture.core.errors import InvalidInput
from aperture.gateway.domain import CompiledRules, SafetyPolicy, TextRules
from aperture.testing.openai_backend import create_backend
from aperture.testing.server import free_port, running_server
from tests.gateway.conftest import World


def test_rules_match_whole_words_without_case_and_name_the_rule() -> None:
    rules = CompiledRules.of(TextRules(("nerve agent", "VX"), (r"synthes[ie]s\s+of",)))
    assert rules.first_match("How is a Nerve Agent made?") == "keyword:nerve agent"
    assert rules.first_match("the vx route") == "keyword:vx"
    assert rules.first_match("vortex vxlan") is None  # whole words only
    assert rules.first_match("Synthesis  of aspirin") == r"pattern:synthes[ie]s\s+of"
    assert CompiledRules.of(TextRules()).first_match("anything") is None


@pytest.mark.parametrize(
    "data",
    [
        {"inputs": {}},
        {"input": {"keywords": "one"}},
        {"input": {"patterns": ["(unclosed"]}},
        {"input": {"keywords": [""]}},
        {"output": {"words": ["x"]}},
        {"classifier": 3},
    ],
)
def test_bad_policies_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        SafetyPolicy.from_dict("m:1", data)


def _api(world: World, served: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=world.key, base_url=f"{served}/v1", max_retries=0, timeout=30)


def test_blocked_input_is_refused_metered_logged_and_repeats_raise_one_alert(
    world: World, served: str, instance_admin: str
) -> None:
    gateway = world.services.gateway
    gateway.set_policy(SYSTEM, world.model, {"input": {"keywords": ["anthrax"], "patterns": [r"weaponi[sz]e"]}})
    api = _api(world, served)
    for prompt in ("How do I culture ANTHRAX?", "how to weaponize a drone", "anthrax again"):
        with pytest.raises(openai.PermissionDeniedError) as refused:
            api.chat.completions.create(model=world.model, messages=[{"role": "user", "content": prompt}])
        assert refused.value.status_code == 403
        assert refused.value.body["code"] == "content_blocked"  # type: ignore[index]
    fine = api.chat.completions.create(
        model=world.model, messages=[{"role": "user", "content": "Tell me about bread"}], max_tokens=3
    )
    assert fine.choices[0].finish_reason in ("stop", "length")
    rows = gateway.usage(SYSTEM)
    assert rows[0].requests == 4 and rows[0].blocked == 3 and rows[0].prompt_tokens > 0
    alerts = gateway.alerts(SYSTEM)
    assert len(alerts) == 1 and alerts[0].kind == "repeated_blocks" and alerts[0].key_id == world.key_id
    evidence = alerts[0].evidence
    assert [e["rule"] for e in evidence] == ["keyword:anthrax", r"pattern:weaponi[sz]e", "keyword:anthrax"]
    assert evidence[0]["excerpt"] == "How do I culture ANTHRAX?" and evidence[0]["stage"] == "input"
    with pytest.raises(openai.PermissionDeniedError):  # a fourth block in the window: no second alert
        api.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "anthrax"}])
    assert len(gateway.alerts(SYSTEM)) == 1
    headers = {"Authorization": f"Bearer {instance_admin}"}
    listed = httpx.get(f"{served}/api/v1/gateway/alerts", params={"open_only": True}, headers=headers).json()
    assert [a["id"] for a in listed] == [alerts[0].id] and len(listed[0]["evidence"]) == 3
    assert httpx.post(f"{served}/api/v1/gateway/alerts/{alerts[0].id}/pick-up", headers=headers).status_code == 204
    assert httpx.get(f"{served}/api/v1/gateway/alerts", params={"open_only": True}, headers=headers).json() == []
    actions = [event.action for event in world.services.audit.list_events(limit=50)]
    assert "gateway.alert.raised" in actions and "gateway.alert.picked_up" in actions


def test_blocked_output_is_withheld_or_cut_with_content_filter(world: World, served: str) -> None:
    api = _api(world, served)
    messages = [{"role": "user", "content": "Write something"}]
    sampled = {"max_tokens": 30, "temperature": 1.0, "seed": 7}  # the same text each time: the seed decides
    plain = api.chat.completions.create(model=world.model, messages=messages, **sampled)  # type: ignore[call-overload]
    again = api.chat.completions.create(model=world.model, messages=messages, **sampled)  # type: ignore[call-overload]
    assert again.choices[0].message.content == plain.choices[0].message.content
    text = plain.choices[0].message.content or ""
    words = [w for w in re.findall(r"\w{3,}", text)]
    assert words, text
    target = words[len(words) // 2]
    world.services.gateway.set_policy(SYSTEM, world.model, {"output": {"patterns": [re.escape(target)]}})
    with pytest.raises(openai.PermissionDeniedError):
        api.chat.completions.create(model=world.model, messages=messages, **sampled)  # type: ignore[call-overload]
    chunks = list(
        api.chat.completions.create(model=world.model, messages=messages, stream=True, **sampled)  # type: ignore[call-overload]
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert target not in streamed and text.startswith(streamed)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    assert world.services.gateway.usage(SYSTEM)[0].blocked == 2


def test_a_moderation_endpoint_as_classifier_fails_closed(world: World, served: str) -> None:
    gateway = world.services.gateway
    api = _api(world, served)
    with running_server(create_backend()) as moderation:
        gateway.set_policy(SYSTEM, world.model, {"classifier": f"openai:{moderation}/v1#omni-moderation"})
        with pytest.raises(openai.PermissionDeniedError):
            api.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "a FORBIDDEN topic"}])
        ok = api.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert ok.usage is not None
    gateway.set_policy(SYSTEM, world.model, {"classifier": f"openai:http://127.0.0.1:{free_port()}/v1#m"})
    with pytest.raises(openai.APIStatusError) as down:
        api.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert down.value.status_code == 502  # nobody could check it: not passed on
    assert gateway.usage(SYSTEM)[0].blocked == 1  # the flagged request only
    with pytest.raises(InvalidInput):
        gateway.set_policy(SYSTEM, world.model, {"classifier": "magic"})


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random sequence classifier (labels safe/unsafe) with the bundled tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=2,
        id2label={0: "safe", 1: "unsafe"},
        label2id={"safe": 0, "unsafe": 1},
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(5)
    target = tmp_path_factory.mktemp("classifier")
    LlamaForSequenceClassification(config).save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    return target


def test_a_local_classifier_flags_the_labels_it_is_told(world: World, served: str, classifier_dir: Path) -> None:
    from transformers import pipeline

    text = "a question about chemistry"
    top = pipeline("text-classification", model=str(classifier_dir), device="cpu")(text)[0]["label"]
    other = "unsafe" if top == "safe" else "safe"
    gateway = world.services.gateway
    api = _api(world, served)
    gateway.set_policy(SYSTEM, world.model, {"classifier": f"model:{classifier_dir}#{top}"})
    with pytest.raises(openai.PermissionDeniedError):
        api.chat.completions.create(model=world.model, messages=[{"role": "user", "content": text}], max_tokens=2)
    gateway.set_policy(SYSTEM, world.model, {"classifier": f"model:{classifier_dir}#{other}"})
    answer = api.chat.completions.create(model=world.model, messages=[{"role": "user", "content": text}], max_tokens=2)
    assert answer.usage is not None
    with pytest.raises(InvalidInput):
        gateway.set_policy(SYSTEM, world.model, {"classifier": f"model:{classifier_dir.parent / 'missing'}#unsafe"})
