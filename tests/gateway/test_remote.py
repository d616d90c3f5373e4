"""Remote backends: forwarding to an OpenAI-compatible server, streams passed through, metering
with the model's own tokenizer, 502 for a server that is down, 504 for one that is too slow,
health checks; and our own gateway as another gateway's backend (with its key)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from aperture.access.domain import SYSTEM
from aperture.gateway.domain import BackendKind, Limits, ScopeKind
from aperture.release.domain import Tier
from aperture.testing.openai_backend import ANSWER, create_backend
from aperture.testing.release import put_tier
from aperture.testing.server import free_port, running_server
from tests.gateway.conftest import World, add_organisation, register


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


def _until(condition: Callable[[], bool], what: str, cap_s: float = 300.0) -> None:
    """Wait for progress (a generation ending), with a cap far above any machine's pace."""
    deadline = time.monotonic() + cap_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.01)


def test_a_stream_closed_early_on_a_remote_backend_ends_cleanly(
    world: World, served: str, tiny_model_dir: Path, tmp_path: Path, logged_errors: list[logging.LogRecord]
) -> None:
    """Our own gateway is the remote backend. A client that leaves a relayed stream early (before
    the first chunk, after a few, or through the official client) stops the backend's generation
    at once, from the request's own task: its connection is released (the pool here holds one),
    its usage is metered and its unused tokens refunded, with the garbage collector off, and
    nothing is logged at ERROR afterwards. Before, the response's task was cancelled with its
    events unclosed: the backend generated to the end for nobody, the refund waited for the
    garbage collector, which then logged "aclose(): asynchronous generator is already running"."""
    services = world.services
    gateway = services.gateway
    front = register(services, tiny_model_dir, tmp_path, "tiny-front")
    put_tier(services, "tiny-front", "1.0.0", Tier.HOSTED)
    add_organisation(services, "relay")  # the front's own key on the backend: limits stay the client's
    relay = gateway.issue_key(SYSTEM, organisation="relay", name="relay").text
    gateway.clients.max_connections = 1  # a leaked connection would block the next request
    gateway.bind(SYSTEM, front, BackendKind.REMOTE, url=f"{served}/v1", remote_model=world.model, api_key=relay)
    gateway.set_limits(SYSTEM, ScopeKind.KEY, world.key_id, Limits(tokens_per_minute=1500))
    engine = gateway._engines[world.model]
    body = {
        "model": front,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 450,
        "temperature": 0,  # greedy: this prompt runs to max_tokens (a sampled end of sequence would end it)
        "stream": True,
        "stop": ["never-in-output-zzz"],
    }
    raw = json.dumps(body).encode()
    where = urlsplit(served)

    def leave_at_once() -> None:
        with socket.create_connection((where.hostname, where.port)) as connection:
            connection.sendall(
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {world.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n\r\n".encode()
                + raw
            )
            _until(lambda: engine.active == 1, "the backend to start generating")

    def leave_after_a_few_chunks() -> None:
        with httpx.stream(
            "POST", f"{served}/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"}, json=body
        ) as response:
            lines = response.iter_lines()
            for _ in range(3):
                next(lines)

    def leave_through_the_client() -> None:
        stream = _api(world, served).chat.completions.create(
            model=front,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=450,
            temperature=0,
            stream=True,
            stop=["zzz-never"],
        )
        next(iter(stream))
        stream.close()

    gc.disable()  # nothing below may wait for the garbage collector
    try:
        for leave in (leave_at_once, leave_after_a_few_chunks, leave_through_the_client):
            cancelled = engine.cancelled
            leave()
            _until(lambda: engine.active == 0, "the backend's generation to end")
            assert engine.cancelled == cancelled + 1, f"{leave.__name__}: the backend generated to the end"

        def metered() -> int:
            return sum(r.requests for r in gateway.usage(SYSTEM, organisation="acme") if r.model == front)

        _until(lambda: metered() == 3, "the three requests to be metered")  # by their own tasks, GC off
        # A long prompt and two tokens: it needs ~430 of the minute's 1,500 tokens, which are there
        # only if the three early closes gave back what they reserved (3 x ~480).
        long = {"model": front, "messages": [{"role": "user", "content": "word " * 400}], "max_tokens": 2}
        answer = httpx.post(
            f"{served}/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"}, json=long, timeout=60
        )
        assert answer.status_code == 200, answer.text  # and the pool's one connection was free
    finally:
        gc.enable()
    gc.collect()
    assert httpx.get(f"{served}/v1/models", headers={"Authorization": f"Bearer {world.key}"}).status_code == 200
    assert [record.getMessage() for record in logged_errors] == []


def test_sampling_fields_are_forwarded_as_checked(world: World, served: str) -> None:
    app = create_backend()
    with running_server(app) as url:
        world.services.gateway.bind(
            SYSTEM, world.model, BackendKind.REMOTE, url=f"{url}/v1", remote_model="backend-model", timeout_s=5
        )
        api = _api(world, served)
        api.chat.completions.create(
            model=world.model,
            messages=[{"role": "user", "content": "Hi"}],
            temperature=0.5,
            seed=-3,
            presence_penalty=0.5,
            frequency_penalty=-1,
            logit_bias={"42": 5},
            stop=["x"],
        )
        api.chat.completions.create(model=world.model, messages=[{"role": "user", "content": "Hi"}])
    sent, plain = list(app.state.calls)
    assert {k: sent[k] for k in ("temperature", "seed", "presence_penalty", "frequency_penalty", "logit_bias")} == {
        "temperature": 0.5,
        "seed": -3,
        "presence_penalty": 0.5,
        "frequency_penalty": -1,
        "logit_bias": {"42": 5},
    }
    assert sent["stop"] == ["x"] and sent["model"] == "backend-model"
    assert not {"presence_penalty", "frequency_penalty", "logit_bias", "seed", "stop"} & set(plain)
