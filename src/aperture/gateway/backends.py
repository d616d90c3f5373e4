"""Remote backends: any OpenAI-compatible server (vLLM, TGI, llama.cpp server), reached through
one pooled `httpx.AsyncClient` per event loop.

A request is forwarded with the model name the server knows; streamed answers are passed through
event by event (each `data:` line parsed once, to meter and check the text). A server that cannot
be reached answers 502, one that is too slow 504; a worker never waits longer than the binding's
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from aperture.core.errors import ApertureError


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
    """One connection pool per event loop (an httpx.AsyncClient may not cross loops)."""

    def __init__(self, *, max_connections: int = 256) -> None:
        self.max_connections = max_connections
        self._clients: dict[int, httpx.AsyncClient] = {}

    def get(self) -> httpx.AsyncClient:
        loop = id(asyncio.get_running_loop())
        client = self._clients.get(loop)
        if client is None:
            limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)
            client = self._clients[loop] = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0))
        return client

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):  # a client of a loop that has ended
                await client.aclose()


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _failure(url: str, error: Exception) -> ApertureError:
    if isinstance(error, httpx.TimeoutException):
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
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        message = str(json.loads(body)["error"]["message"])
    return BackendRefused(status, f"the model's server refused the request: {message}")


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
            response = await self.clients.get().post(
                self.url + path,
                content=payload,
                headers=self.headers,
                timeout=_timeout(self.timeout_s),
            )
        except httpx.HTTPError as error:
            raise _failure(self.url, error) from None
        if response.status_code >= 400:
            raise _refusal(self.url, response.status_code, response.content)
        try:
            data: dict[str, Any] = json.loads(response.content)
        except ValueError:
            raise BackendFailed(f"the backend at {self.url} answered something other than JSON") from None
        return data

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The server's chunks, parsed, until `data: [DONE]`."""
        payload = json.dumps({**body, "model": self.remote_model, "stream": True}).encode()
        client = self.clients.get()
        request = client.build_request(
            "POST",
            self.url + path,
            content=payload,
            headers={**self.headers, "accept": "text/event-stream"},
            timeout=_timeout(self.timeout_s),
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise _failure(self.url, error) from None
        try:
            if response.status_code >= 400:
                raise _refusal(self.url, response.status_code, await response.aread())
            async for line in response.aiter_lines():
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
        except httpx.HTTPError as error:
            raise _failure(self.url, error) from None
        finally:
            await response.aclose()

    async def health(self) -> tuple[bool, str]:
        """(healthy, detail): the server lists its models and knows ours."""
        try:
            response = await self.clients.get().get(
                self.url + "/models", headers=self.headers, timeout=_timeout(min(self.timeout_s, 5.0))
            )
        except httpx.HTTPError as error:
            return False, f"{type(error).__name__}: cannot be reached"
        if response.status_code != 200:
            return False, f"answered {response.status_code}"
        with contextlib.suppress(ValueError, KeyError, TypeError):
            names = {str(item["id"]) for item in json.loads(response.content)["data"]}
            if self.remote_model not in names:
                return False, f"does not serve {self.remote_model!r} (it serves {', '.join(sorted(names)[:5])})"
            return True, "ok"
        return False, "its /models answer is not understood"
