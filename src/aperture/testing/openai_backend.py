"""A minimal OpenAI-compatible server standing in for a remote model server (vLLM, TGI) in tests
and in the gateway overhead benchmark: it answers at once (or after `delay_s`) with a fixed text,
streams it word by word, and serves a `/moderations` endpoint that flags chosen words.

A plain Starlette app (no validation, no framework overhead): the benchmark measures what the
gateway adds, so the backend must cost as little as possible.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ANSWER = "The quick brown fox jumps over the lazy dog."


def create_backend(
    model: str = "backend-model",
    *,
    answer: str = ANSWER,
    delay_s: float = 0.0,
    flagged_words: tuple[str, ...] = ("forbidden",),
) -> Starlette:
    # The latest requests, for tests to inspect; bounded so a long benchmark does not grow it forever.
    calls: deque[dict[str, Any]] = deque(maxlen=1000)

    def _usage(prompt: int, completion: int) -> dict[str, int]:
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def models(_: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "x"}]}
        )

    async def complete(request: Request) -> Response:
        body = json.loads(await request.body())
        calls.append(body)
        if delay_s:
            await asyncio.sleep(delay_s)
        chat = request.url.path.endswith("/chat/completions")
        words = answer.split(" ")
        limit = int(body.get("max_tokens") or len(words))
        text = " ".join(words[:limit])
        finish = "length" if limit < len(words) else "stop"
        if body.get("stream"):
            return StreamingResponse(_stream(chat, words[:limit], finish), media_type="text/event-stream")
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            if chat
            else {"index": 0, "text": text, "finish_reason": finish}
        )
        return JSONResponse(
            {
                "id": "cmpl-backend",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": _usage(7, min(limit, len(words))),
            }
        )

    async def _stream(chat: bool, words: list[str], finish: str) -> AsyncIterator[bytes]:
        for position, word in enumerate(words):
            piece = word if position == 0 else " " + word
            choice = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
            yield b"data: " + json.dumps({"model": model, "choices": [choice]}).encode() + b"\n\n"
        last = (
            {"index": 0, "delta": {}, "finish_reason": finish}
            if chat
            else {"index": 0, "text": "", "finish_reason": finish}
        )
        yield b"data: " + json.dumps({"model": model, "choices": [last]}).encode() + b"\n\n"
        yield b"data: " + json.dumps({"model": model, "choices": [], "usage": _usage(7, len(words))}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def moderations(request: Request) -> Response:
        text = str(json.loads(await request.body()).get("input", "")).lower()
        hits = {word: word in text for word in flagged_words}
        return JSONResponse({"results": [{"flagged": any(hits.values()), "categories": hits}]})

    app = Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", complete, methods=["POST"]),
            Route("/v1/completions", complete, methods=["POST"]),
            Route("/v1/moderations", moderations, methods=["POST"]),
        ]
    )
    app.state.calls = calls
    return app
