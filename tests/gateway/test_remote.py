"""Remote backends: forwarding to an OpenAI-compatible server, streams passed through, metering
with the model's own tokenizer, 502 for a server that is down, 504 for one that is too slow,
health checks; and our own gateway as another gateway's backend (with its key)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from aperture.access.domain import SYSTEM
from aperture.gateway.domain import BackendKind
from aperture.release.domain import Tier
from aperture.testing.openai_backend import ANSWER, create_backend
from aperture.testing.release import put_tier
from aperture.testing.server import free_port, running_server
from tests.gateway.conftest import World, register


class HfCount:
    def __init__(self, directory: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def chat(self, messages: list[dict[str, str]]) -> int:
        return self.count(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


@pytest.fixture
def backend() -> Iterator[str]:
    with running_server(create_backend()) as url:
        yield f"{url}/v1"


def _api(world: World, served: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=world.key, base_url=f"{served}/v1", max_retries=0, timeout=30)


def test_requests_and_streams_are_forwarded_and_metered_with_the_models_tokenizer(
    world: World, served: str, backend: str, tiny_model_dir: Path
) -> None:
    gateway = world.services.gateway
    gateway.bind(SYSTEM, world.model, BackendKind.REMOTE, url=backend, remote_model="backend-model", timeout_s=5)
    api = _api(world, served)
    chat = api.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "Hi"}])
    assert chat.choices[0].message.content == ANSWER and chat.model == world.model
    tokens = HfCount(tiny_model_dir)  # counted independently, with transformers' own tokenizer
    assert chat.usage is not None and chat.usage.completion_tokens == tokens.count(ANSWER)
    assert chat.usage.prompt_tokens == tokens.chat([{"role": "user", "content": "Hi"}])
    stream = api.chat.completions.create(
        model=world.model,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=5,
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == " ".join(ANSWER.split()[:5])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == tokens.count(streamed)
    text = api.completions.create(model=world.model, prompt="Say it", max_tokens=3)
    assert text.choices[0].text == " ".join(ANSWER.split()[:3])
    rows = gateway.usage(SYSTEM)
    assert sum(r.requests for r in rows) == 3
    assert sum(r.completion_tokens for r in rows) == tokens.count(ANSWER) + tokens.count(streamed) + tokens.count(
        text.choices[0].text
    )


def test_a_backend_that_is_down_or_slow_answers_502_or_504(world: World, served: str) -> None:
    gateway = world.services.gateway
    body = {"model": world.model, "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"Authorization": f"Bearer {world.key}"}
    gateway.bind(SYSTEM, world.model, BackendKind.REMOTE, url=f"http://127.0.0.1:{free_port()}/v1", timeout_s=2)
    down = httpx.post(f"{served}/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert down.status_code == 502 and down.json()["error"]["code"] == "backend_unavailable"
    streamed = httpx.post(f"{served}/v1/chat/completions", json={**body, "stream": True}, headers=headers, timeout=30)
    assert streamed.status_code == 502
    assert asyncio.run(gateway.check_backends())[0]["healthy"] is False
    with running_server(create_backend(delay_s=5.0)) as slow:
        gateway.bind(
            SYSTEM, world.model, BackendKind.REMOTE, url=f"{slow}/v1", remote_model="backend-model", timeout_s=0.5
        )
        started = time.monotonic()
        late = httpx.post(f"{served}/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert late.status_code == 504 and late.json()["error"]["type"] == "timeout_error"
        assert time.monotonic() - started < 3  # no worker waits past the binding's timeout
        assert asyncio.run(gateway.check_backends())[0]["healthy"] is True
    assert gateway.usage(SYSTEM) == []  # nothing answered, nothing metered


def test_our_gateway_serves_as_another_gateways_backend(
    world: World, served: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    services = world.services
    front = register(services, tiny_model_dir, tmp_path, "tiny-front")
    put_tier(services, "tiny-front", "1.0.0", Tier.HOSTED)
    services.gateway.bind(
        SYSTEM, front, BackendKind.REMOTE, url=f"{served}/v1", remote_model=world.model, api_key=world.key
    )
    api = _api(world, served)
    direct = api.chat.completions.create(
        model=world.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0
    )
    relayed = api.chat.completions.create(
        model=front, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0
    )
    assert relayed.choices[0].message.content == direct.choices[0].message.content
    chunks = list(
        api.chat.completions.create(
            model=front, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == direct.choices[0].message.content
    health = asyncio.run(services.gateway.check_backends())
    assert {row["model"]: row["healthy"] for row in health} == {world.model: True, front: True}
