"""Remote backends: any OpenAI-compatible server (vLLM, TGI, llama.cpp server), reached through
one pooled `aiohttp.ClientSession` per event loop.

aiohttp rather than httpx: with 32 connections open, httpx's pool (httpcore) polls every idle
connection's socket on each request and spent about two thirds of the gateway's CPU time in a
profile at concurrency 32 (its throughput fell from 590 requests/s at concurrency 4 to 200 at 32);
aiohttp's connector hands out a kept-alive connection in constant time.

A request is forwarded with the model name the server knows; streamed answers are passed through
event by event (each `data:` line parsed once, to meter and check the text). A server that cannot
be reached answers 502, one that is too slow 504; a worker never waits longer than the binding's
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from aperture.core.errors import ApertureError

if TYPE_CHECKING:
    import aiohttp

# aiohttp is imported when a backend is first called, not with the module: the CLI builds the
# gateway service for every command, and loading aiohttp costs it a tenth of a second.


class BackendFailed(ApertureError):
    code = "backend_unavailable"
    http_status = 502
    exit_code = 9


class BackendTimeout(ApertureError):
    code = "backend_timeout"
    http_status = 504
    exit_code = 9


class BackendRefused(ApertureError):
    """The backend answered 4xx: its own words, with its status."""

    code = "backend_refused"
    http_status = 400
    exit_code = 2

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, hint="check the request against the model's limits")
        self.http_status = status  # type: ignore[misc]


class Clients:
    """One connection pool per event loop (a client session may not cross loops)."""

    def __init__(self, *, max_connections: int = 256) -> None:
        self.max_connections = max_connections
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    def get(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = id(asyncio.get_running_loop())
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=60)
            session = self._sessions[loop] = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=60), auto_decompress=True
            )
        return session

    async def aclose(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            with contextlib.suppress(Exception):  # a session of a loop that has ended
                await session.close()


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds, connect=min(seconds, 5.0))


def _failure(url: str, error: BaseException) -> ApertureError:
    if isinstance(error, asyncio.TimeoutError):
        return BackendTimeout(
            f"the backend at {url} did not answer in time", hint="retry later; the model's server is overloaded or slow"
        )
    return BackendFailed(
        f"the backend at {url} cannot be reached ({type(error).__name__})",
        hint="retry later; the model's server is down",
    )


def _refusal(url: str, status: int, body: bytes) -> ApertureError:
    if status >= 500 or status in (401, 403, 404):
        # Our own binding is wrong or the server failed: the caller cannot fix that.
        return BackendFailed(f"the backend at {url} answered {status}", hint="retry later, or tell the operator")
    message = body[:500].decode("utf-8", "replace")
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
        message = str(json.loads(body)["error"]["message"])
    return BackendRefused(status, f"the model's server refused the request: {message}")


@functools.cache
def failures() -> tuple[type[BaseException], ...]:
    """What a call to a backend raises when the backend cannot be reached or is too slow."""
    import aiohttp

    return (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class RemoteBackend:
    def __init__(
        self, clients: Clients, url: str, remote_model: str, timeout_s: float, api_key: str | None = None
    ) -> None:
        self.clients = clients
        self.url = url.rstrip("/")
        self.remote_model = remote_model
        self.timeout_s = timeout_s
        self.headers = {"content-type": "application/json"}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"

    async def complete(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps({**body, "model": self.remote_model, "stream": False}).encode()
        try:
            async with self.clients.get().post(
                self.url + path, data=payload, headers=self.headers, timeout=_timeout(self.timeout_s)
            ) as response:
                content = await response.read()
                status = response.status
        except failures() as error:
            raise _failure(self.url, error) from None
        if status >= 400:
            raise _refusal(self.url, status, content)
        try:
            data: dict[str, Any] = json.loads(content)
        except ValueError:
            raise BackendFailed(f"the backend at {self.url} answered something other than JSON") from None
        return data

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """The server's chunks, parsed, until `data: [DONE]`. Close it (`contextlib.aclosing`) when
        stopping early: that releases the connection at once, and the server stops generating."""
        payload = json.dumps({**body, "model": self.remote_model, "stream": True}).encode()
        headers = {**self.headers, "accept": "text/event-stream"}
        try:
            async with self.clients.get().post(
                self.url + path, data=payload, headers=headers, timeout=_timeout(self.timeout_s)
            ) as response:
                if response.status >= 400:
                    raise _refusal(self.url, response.status, await response.read())
                async for raw in response.content:
                    line = raw.decode("utf-8").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise BackendFailed(f"the backend at {self.url} sent a chunk that is not JSON") from None
                    if isinstance(chunk, dict):
                        yield chunk
        except failures() as error:
            raise _failure(self.url, error) from None

    async def health(self) -> tuple[bool, str]:
        """(healthy, detail): the server lists its models and knows ours."""
        try:
            async with self.clients.get().get(
                self.url + "/models", headers=self.headers, timeout=_timeout(min(self.timeout_s, 5.0))
            ) as response:
                status, content = response.status, await response.read()
        except failures() as error:
            return False, f"{type(error).__name__}: cannot be reached"
        if status != 200:
            return False, f"answered {status}"
        with contextlib.suppress(ValueError, KeyError, TypeError):
            names = {str(item["id"]) for item in json.loads(content)["data"]}
            if self.remote_model not in names:
                return False, f"does not serve {self.remote_model!r} (it serves {', '.join(sorted(names)[:5])})"
            return True, "ok"
        return False, "its /models answer is not understood"
