"""The OpenAI-compatible API on a real server, called with the official `openai` client and httpx."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.gateway.conftest import World


def client(world: World, base: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=world.key, base_url=f"{base}/v1", max_retries=0, timeout=60)


def test_the_official_client_lists_models_and_completes(world: World, served: str) -> None:
    api = client(world, served)
    assert [m.id for m in api.models.list()] == [world.model]
    chat = api.chat.completions.create(
        model=world.model, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0
    )
    assert chat.object == "chat.completion" and chat.model == world.model
    assert chat.choices[0].finish_reason in ("stop", "length")
    assert chat.usage is not None and chat.usage.prompt_tokens > 0 and 0 < chat.usage.completion_tokens <= 8
    text = api.completions.create(model=world.model, prompt="Once upon a time", max_tokens=5, temperature=0)
    assert text.object == "text_completion" and text.usage is not None and text.usage.completion_tokens <= 5


def test_streaming_ends_with_done_and_usage(world: World, served: str) -> None:
    api = client(world, served)
    stream = api.chat.completions.create(
        model=world.model,
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish and finish[-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens <= 12
    whole = api.chat.completions.create(
        model=world.model, messages=[{"role": "user", "content": "Hello"}], max_tokens=12, temperature=0
    )
    assert whole.choices[0].message.content == text  # greedy: the same text streamed or not
    with httpx.stream(
        "POST",
        f"{served}/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={"model": world.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True},
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"


def test_bad_keys_are_401_in_openai_shape(world: World, served: str) -> None:
    for header in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Bearer gwk_00000000_" + "a" * 43}):
        response = httpx.get(f"{served}/v1/models", headers=header)
        assert response.status_code == 401
        error = response.json()["error"]
        assert set(error) >= {"message", "type", "code"} and error["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="gwk_nope", base_url=f"{served}/v1", max_retries=0).models.list()
