"""The OpenAI-compatible API on a real server, called with the official `openai` client and httpx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest

from aperture.access.domain import SYSTEM
from aperture.gateway.domain import BackendKind
from aperture.release.domain import Tier
from aperture.testing.release import put_tier
from tests.gateway.conftest import World, add_organisation, register


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


def _post(base: str, key: str, body: object, path: str = "/v1/chat/completions", **kwargs: object) -> httpx.Response:
    return httpx.post(f"{base}{path}", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=60, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "tiny-llama:1.0.0", "messages": []}, 422, "messages"),
        (
            {"model": "tiny-llama:1.0.0", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1},
            422,
            "max_tokens",
        ),
        (
            {"model": "tiny-llama:1.0.0", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"},
            422,
            "max_tokens",
        ),
        (
            {"model": "tiny-llama:1.0.0", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
            422,
            "temperature",
        ),
        ({"model": "tiny-llama:1.0.0", "messages": [{"role": "user", "content": "x"}], "n": 2}, 422, "n"),
        ({"model": "tiny-llama:1.0.0", "messages": [{"role": "wizard", "content": "x"}]}, 422, "messages.0.role"),
        (
            {"model": "tiny-llama:1.0.0", "messages": [{"role": "user", "content": "x"}], "max_tokens": 999999},
            422,
            "max_tokens",
        ),
        ({"model": "nope:1.0", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
        *(
            ({"model": "tiny-llama:1.0.0", "messages": [{"role": "user", "content": "x"}], field: value}, 422, param)
            for field, value, param in (
                ("seed", 2**64, "seed"),  # beyond the generator's range: it used to end the whole batch
                ("seed", -(2**63) - 1, "seed"),
                ("seed", 1.5, "seed"),
                ("top_p", 0, "top_p"),
                ("top_p", 1.5, "top_p"),
                ("temperature", -0.1, "temperature"),
                ("presence_penalty", 2.5, "presence_penalty"),
                ("frequency_penalty", -3, "frequency_penalty"),
                ("logit_bias", {"abc": 1}, "logit_bias"),
                ("logit_bias", {"5": 101}, "logit_bias"),
                ("logit_bias", {str(i): 1 for i in range(301)}, "logit_bias"),
                ("logit_bias", {"99999999": 1}, "logit_bias"),  # beyond the model's vocabulary
                ("stop", ["a", "b", "c", "d", "e"], "stop"),
                ("stop", "s" * 257, "stop"),
                ("stop", [""], "stop"),
                ("max_tokens", 0, "max_tokens"),
                ("max_tokens", 2**40, "max_tokens"),
                ("max_completion_tokens", 0, "max_completion_tokens"),
                ("n", 0, "n"),
            )
        ),
    ],
)
def test_bad_requests_get_openai_errors_and_change_nothing(
    world: World, served: str, body: dict[str, object], status: int, param: str
) -> None:
    response = _post(served, world.key, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["code"]
    assert world.services.gateway.usage(SYSTEM) == []


def test_malformed_json_huge_bodies_and_unknown_fields(world: World, served: str) -> None:
    response = httpx.post(
        f"{served}/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}", "content-type": "application/json"},
        content=b'{"model": "tiny-llama:1.0.0", "messages": [',
    )
    assert response.status_code == 422 and response.json()["error"]["type"] == "invalid_request_error"
    huge = {"model": world.model, "messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]}
    response = _post(served, world.key, huge)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no content-length: the bound holds while reading
        yield b'{"model": "tiny-llama:1.0.0", "messages": [{"role": "user", "content": "'
        for _ in range(2048):
            yield b"y" * 1024
        yield b'"}]}'

    response = httpx.post(
        f"{served}/v1/chat/completions", headers={"Authorization": f"Bearer {world.key}"}, content=chunks()
    )
    assert response.status_code == 413
    extra = {"model": world.model, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "metadata": {}}
    assert _post(served, world.key, extra).status_code == 200  # unknown fields are ignored
    for field in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        for number in ("NaN", "Infinity", "-Infinity"):  # not JSON, but parsers accept them
            response = httpx.post(
                f"{served}/v1/chat/completions",
                headers={"Authorization": f"Bearer {world.key}", "content-type": "application/json"},
                content=f'{{"model": "{world.model}", "messages": [{{"role": "user", "content": "x"}}],'
                f' "{field}": {number}}}'.encode(),
            )
            assert response.status_code == 422 and response.json()["error"]["param"] == field, response.text
    response = httpx.post(
        f"{served}/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}", "content-type": "application/json"},
        content=f'{{"model": "{world.model}", "messages": [{{"role": "user", "content": "x"}}],'
        ' "logit_bias": {"5": NaN}}'.encode(),
    )
    assert response.status_code == 422 and response.json()["error"]["param"].startswith("logit_bias")
    assert sum(row.requests for row in world.services.gateway.usage(SYSTEM)) == 1  # the one served


def test_revoked_and_expired_keys_are_refused(world: World, served: str) -> None:
    gateway = world.services.gateway
    later = gateway.issue_key(
        SYSTEM, organisation="acme", name="short", expires_at=datetime.now(UTC) + timedelta(seconds=1)
    )
    assert httpx.get(f"{served}/v1/models", headers={"Authorization": f"Bearer {later.text}"}).status_code == 200
    gateway.revoke_key(SYSTEM, world.key_id)
    response = httpx.get(f"{served}/v1/models", headers={"Authorization": f"Bearer {world.key}"})
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]
    time.sleep(1.1)
    gateway.invalidate()
    response = httpx.get(f"{served}/v1/models", headers={"Authorization": f"Bearer {later.text}"})
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_only_versions_the_tier_and_grants_allow_are_listed_and_callable(
    world: World, served: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    services = world.services
    gateway = services.gateway
    chat = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    add_organisation(services, "other")
    other = gateway.issue_key(SYSTEM, organisation="other", name="other").text
    for version, tier in (("2.0.0", None), ("3.0.0", Tier.LICENSED), ("4.0.0", Tier.SECURED), ("5.0.0", Tier.OPEN)):
        ref = register(services, tiny_model_dir, tmp_path, "tiny-llama", version)
        if tier is not None:
            put_tier(services, "tiny-llama", version, tier)
        gateway.bind(SYSTEM, ref, BackendKind.EMBEDDED)
    gateway.grant(SYSTEM, "acme", "tiny-llama:3.0.0")
    gateway.grant(SYSTEM, "acme", "tiny-llama:4.0.0")

    def listed(key: str) -> set[str]:
        response = httpx.get(f"{served}/v1/models", headers={"Authorization": f"Bearer {key}"})
        return {m["id"] for m in response.json()["data"]}

    assert listed(world.key) == {"tiny-llama:1.0.0", "tiny-llama:3.0.0", "tiny-llama:4.0.0", "tiny-llama:5.0.0"}
    assert listed(other) == {"tiny-llama:1.0.0", "tiny-llama:5.0.0"}
    for model in ("tiny-llama:2.0.0", "tiny-llama:3.0.0", "tiny-llama:4.0.0"):
        refused = _post(served, other, {"model": model, **chat})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
        missing = _post(served, other, {"model": "tiny-llama:9.9.9", **chat})
        assert refused.json()["error"]["message"].replace(model, "X") == missing.json()["error"]["message"].replace(
            "tiny-llama:9.9.9", "X"
        )
        assert httpx.get(f"{served}/v1/models/{model}", headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert _post(served, world.key, {"model": "tiny-llama:4.0.0", **chat}).status_code == 200
    gateway.grant(SYSTEM, "acme", "tiny-llama:4.0.0", revoke=True)
    assert _post(served, world.key, {"model": "tiny-llama:4.0.0", **chat}).status_code == 404
    # Weights are never reachable through the gateway: nothing under /v1 serves files.
    for path in ("/v1/models/tiny-llama:1.0.0/files", "/v1/files", "/v1/models/tiny-llama:1.0.0/weights"):
        assert httpx.get(f"{served}{path}", headers={"Authorization": f"Bearer {world.key}"}).status_code in (404, 405)


def test_concurrent_requests_share_batches_and_a_disconnect_frees_the_slot(world: World, served: str) -> None:
    api = client(world, served)
    body = {"messages": [{"role": "user", "content": "Count"}], "max_tokens": 40, "temperature": 0}

    def one(i: int) -> int:
        result = api.chat.completions.create(model=world.model, seed=i, **body)  # type: ignore[call-overload]
        assert result.usage is not None
        return int(result.usage.completion_tokens)

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(one, range(8)))
    assert all(c > 0 for c in counts)
    engine = world.services.gateway._engines[world.model]
    assert engine.peak_rows > 1  # served together, not one at a time
    with httpx.stream(
        "POST",
        f"{served}/v1/chat/completions",
        headers={"Authorization": f"Bearer {world.key}"},
        json={
            "model": world.model,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 400,
            "stream": True,
            "stop": ["never-in-output-zzz"],
        },
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        next(lines)
        next(lines)
        assert engine.active == 1
    deadline = time.monotonic() + 10
    while engine.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.active == 0 and engine.cancelled == 1  # stopped for the client that left, slot freed


def test_the_gateway_alone_serves_v1_and_healthz(world: World) -> None:
    from aperture.gateway.http import create_gateway_app
    from aperture.testing.server import running_server

    with running_server(create_gateway_app(world.services)) as base:
        assert httpx.get(f"{base}/healthz").json()["role"] == "gateway"
        api = client(world, base)
        assert [m.id for m in api.models.list()] == [world.model]
        answer = api.completions.create(model=world.model, prompt="Hi", max_tokens=3)
        assert answer.usage is not None and answer.usage.completion_tokens <= 3
        missing = httpx.get(f"{base}/api/v1/models")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert httpx.get(f"{base}/v1/chat/completions").status_code == 405


def test_a_client_that_leaves_before_a_whole_answer_stops_its_generation(world: World, served: str) -> None:
    import json
    import socket
    from urllib.parse import urlsplit

    engine = world.services.gateway._engines[world.model]
    before = engine.cancelled
    body = json.dumps(
        {
            "model": world.model,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 480,
            "stop": ["never-in-output-zzz"],
        }
    ).encode()
    where = urlsplit(served)
    with socket.create_connection((where.hostname, where.port)) as connection:
        connection.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {world.key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # Bounds for a busy machine: each wait ends as soon as the engine moves.
        deadline = time.monotonic() + 60
        while engine.active == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert engine.active == 1
    deadline = time.monotonic() + 60
    while engine.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.active == 0 and engine.cancelled == before + 1


def test_a_poisoned_request_does_not_end_other_organisations_generations(world: World, served: str) -> None:
    """Another organisation streams from the shared embedded engine while this one sends a seed
    beyond the generator's range (refused: 422) and a numerically tiny temperature (served
    greedily, in the same batch). The other stream ends normally with the text it gets alone.
    Before, the seed ended every in-flight generation on the engine with an error."""
    services = world.services
    add_organisation(services, "other")
    other = services.gateway.issue_key(SYSTEM, organisation="other", name="other").text
    body = {
        "model": world.model,
        "messages": [{"role": "user", "content": "Tell me a story"}],
        "max_tokens": 160,
        "temperature": 0,
        "stop": ["never-in-output-zzz"],
    }
    alone = _post(served, other, body).json()["choices"][0]["message"]["content"]
    engine = world.services.gateway._engines[world.model]
    chat = {"model": world.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    with httpx.stream(
        "POST",
        f"{served}/v1/chat/completions",
        headers={"Authorization": f"Bearer {other}"},
        json={**body, "stream": True},
        timeout=60,
    ) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(4)]  # the other organisation's generation is running
        assert engine.active == 1
        refused = _post(served, world.key, {**chat, "seed": 2**64})
        assert refused.status_code == 422 and refused.json()["error"]["param"] == "seed"
        tiny = _post(served, world.key, {**chat, "temperature": 1e-40, "seed": 3})
        greedy = _post(served, world.key, {**chat, "temperature": 0})
        assert tiny.status_code == 200 and tiny.json()["choices"] == greedy.json()["choices"]
        received += list(lines)
    assert engine.peak_rows >= 2  # the tiny temperature shared a batch with the other stream
    events = [json.loads(line[6:]) for line in received if line.startswith("data: {")]
    assert not any("error" in event for event in events), events[-1]
    assert [line for line in received if line][-1] == "data: [DONE]"
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == alone
