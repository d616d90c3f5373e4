"""The gateway over HTTP: the OpenAI-compatible `/v1` routes, the operators' `/api/v1/gateway`
routes, and `create_gateway_app` (the gateway alone, for `aperture gateway`).

The `/v1` handlers read and validate the body themselves (size bound first, then pydantic), so
every failure, from a malformed body to a backend timeout, answers in OpenAI's error shape
`{"error": {"message", "type", "param", "code"}}` with the right status; a 429 carries
`Retry-After`. Streams are Server-Sent Events ending in `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Send

from aperture import __version__
from aperture.core.errors import ApertureError, InvalidInput, TooLarge
from aperture.gateway.domain import BackendKind, openai_error
from aperture.gateway.engine import Event
from aperture.gateway.service import Admitted, CompletionRequest, ContentBlocked, GatewayService, RateLimited
from aperture.http_support import SignedIn, bearer_token

if TYPE_CHECKING:
    from aperture.bootstrap import Services

log = logging.getLogger("aperture.gateway.http")

# --- request bodies (OpenAI's fields; unknown fields are ignored, known ones must have their type
# and their range, checked here before anything reaches the engine, torch or a remote server)

# A seed is a 64-bit signed integer: what torch's generator takes and what vLLM accepts.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
MAX_STOPS = 4
MAX_STOP_CHARS = 256
MAX_BIASED_TOKENS = 300  # OpenAI's own bound on logit_bias
MAX_TOKEN_ID = 2**31 - 1


class _Body(BaseModel):
    # NaN and infinities are not numbers a request may carry (JSON has neither; parsers accept both).
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str = Field(min_length=1, max_length=300)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKEN_ID)
    temperature: float = Field(1.0, ge=0, le=2, description="0 (or below 1e-5) is greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, description="a 64-bit signed integer")
    n: int = Field(1, ge=1, le=1, description="only 1 is supported")
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = Field(
        None, max_length=MAX_BIASED_TOKENS, description="token id (a decimal string) -> bias from -100 to 100"
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)

    @field_validator("logit_bias")
    @classmethod
    def _token_ids_and_biases(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not (key.isascii() and key.isdigit() and len(key) <= 10 and int(key) <= MAX_TOKEN_ID):
                raise ValueError(f"keys are token ids (0 to {MAX_TOKEN_ID}), not {key[:20]!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"the bias of token {key} is {bias}: biases run from -100 to 100")
        return value

    def stops(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOPS or any(not s or len(s) > MAX_STOP_CHARS for s in stops):
            raise InvalidInput(
                f"stop takes at most {MAX_STOPS} non-empty strings of at most {MAX_STOP_CHARS} characters",
                hint="shorten or drop stop strings",
                details={"param": "stop"},
            )
        return tuple(stops)

    def biases(self) -> tuple[tuple[int, float], ...]:
        return tuple((int(key), float(bias)) for key, bias in (self.logit_bias or {}).items())

    def sampling_fields(self, fields: dict[str, Any], stops: tuple[str, ...]) -> dict[str, Any]:
        """`fields` (the prompt) with what a remote server is sent besides (defaults left out)."""
        fields["temperature"] = self.temperature
        fields["top_p"] = self.top_p
        if stops:
            fields["stop"] = list(stops)
        if self.seed is not None:
            fields["seed"] = self.seed
        if self.presence_penalty:
            fields["presence_penalty"] = self.presence_penalty
        if self.frequency_penalty:
            fields["frequency_penalty"] = self.frequency_penalty
        if self.logit_bias:
            fields["logit_bias"] = dict(self.logit_bias)
        return fields


class ChatBody(_Sampling):
    messages: list[Message] = Field(min_length=1, max_length=1000)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKEN_ID)


class CompletionBody(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = None

    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise InvalidInput("send one prompt per request", details={"param": "prompt"})
        return self.prompt[0]


def _validation_message(error: ValidationError) -> tuple[str, str | None]:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"the request is not valid: {where}: {first.get('msg', '')}", where or None


def _error_response(error: ApertureError) -> JSONResponse:
    code = str(error.details.get("code") or error.code)
    message = error.message + (f" (hint: {error.hint})" if error.hint else "")
    headers = {"Retry-After": error.retry_after} if isinstance(error, RateLimited) else None
    param = error.details.get("param")
    return JSONResponse(
        openai_error(error.http_status, message, code, None if param is None else str(param)),
        status_code=error.http_status,
        headers=headers,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body is larger than {limit} bytes", hint="send a shorter request")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body is larger than {limit} bytes", hint="send a shorter request")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(model: type[ChatBody] | type[CompletionBody], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        message, param = _validation_message(error)
        raise InvalidInput(message, hint="fix the field named", details={"param": param}) from None


def chat_request(body: ChatBody) -> CompletionRequest:
    messages = tuple({"role": m.role, "content": m.text()} for m in body.messages)
    stops = body.stops()
    return CompletionRequest(
        "chat",
        body.model,
        messages=messages,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stops,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.biases() if body.logit_bias else (),
        stream=body.stream,
        forward=body.sampling_fields({"messages": list(messages)}, stops),
    )


def text_request(body: CompletionBody) -> CompletionRequest:
    if body.echo or body.logprobs:
        raise InvalidInput("echo and logprobs are not supported", details={"param": "echo"})
    prompt = body.text()
    stops = body.stops()
    return CompletionRequest(
        "text",
        body.model,
        prompt=prompt,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stops,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.biases() if body.logit_bias else (),
        stream=body.stream,
        forward=body.sampling_fields({"prompt": prompt}, stops),
    )


# --- response shapes --------------------------------------------------------------------------


def _usage(event: Event) -> dict[str, int]:
    return {
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "total_tokens": event.prompt_tokens + event.completion_tokens,
    }


class _Shape:
    def __init__(self, admitted: Admitted) -> None:
        self.kind = admitted.request.kind
        self.id = ("chatcmpl-" if self.kind == "chat" else "cmpl-") + admitted.id.replace("-", "")
        self.created = int(time.time())
        self.model = admitted.model.id

    def whole(self, text: str, last: Event) -> dict[str, Any]:
        if self.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": last.finish_reason,
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": last.finish_reason}
            obj = "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": _usage(last),
        }

    def chunk(self, text: str | None, finish: str | None, usage: bool, *, first: bool = False) -> bytes:
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        data: dict[str, Any] = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }
        if usage:
            data["usage"] = None
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    def usage_chunk(self, last: Event) -> bytes:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": _usage(last),
        }
        return b"data: " + json.dumps(data).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


async def _stream(
    shape: _Shape, first: Event, events: AsyncGenerator[Event, None], include_usage: bool
) -> AsyncGenerator[bytes, None]:
    try:
        if shape.kind == "chat":
            yield shape.chunk("", None, include_usage, first=True)
        event: Event | None = first
        while event is not None:
            if event.done:
                if event.text:
                    yield shape.chunk(event.text, None, include_usage)
                yield shape.chunk(None if shape.kind == "chat" else "", event.finish_reason, include_usage)
                if include_usage:
                    yield shape.usage_chunk(event)
                break
            if event.text:
                yield shape.chunk(event.text, None, include_usage)
            event = await anext(events, None)
        yield DONE
    except ApertureError as error:  # after the headers: the error travels as an event
        body = openai_error(error.http_status, error.message, str(error.details.get("code") or error.code))
        yield b"data: " + json.dumps(body).encode() + b"\n\n"
    finally:
        # Before the response ends: its usage is in the write-ahead log when the client sees the end.
        await events.aclose()


# How long closing an answer's events may take (the backend's connection, metering, the refund).
CLOSE_BOUND_S = 10.0


async def _close(*generators: AsyncGenerator[Any, None]) -> None:
    """Close `generators` in order, in this task, even while it is being cancelled (Starlette
    cancels through anyio, which cancels every later await of the task unless shielded: then the
    closing is shielded, within `CLOSE_BOUND_S`; a shield costs 30 us, so only then)."""
    task = asyncio.current_task()
    if task is not None and not task.cancelling():
        for generator in generators:
            await generator.aclose()
        return
    with anyio.move_on_after(CLOSE_BOUND_S, shield=True):
        for generator in generators:
            await generator.aclose()


class _EventStream(StreamingResponse):
    """A Server-Sent Events answer that closes its events however the response ends.

    Starlette cancels the task of a response whose client left and leaves its body unclosed; the
    generation behind it (a remote backend's connection, metering, the limiter's refund) was then
    closed only by the garbage collector, each generator in a task of its own, which failed with
    "aclose(): asynchronous generator is already running" (logged at ERROR), while the backend
    went on generating for nobody. Here the response's own task closes the body (whose end closes
    the events, before the last chunk when it runs to its end), then the events (which the body
    never started when the client left before the first chunk).
    """

    def __init__(self, body: AsyncGenerator[bytes, None], events: AsyncGenerator[Event, None]) -> None:
        super().__init__(
            body, media_type="text/event-stream", headers={"cache-control": "no-cache", "x-accel-buffering": "no"}
        )
        self._body = body
        self._events = events

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            await _close(self._body, self._events)


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, Any]) -> Any:
    """`work`'s result, or None (with `work` cancelled) when the client disconnects first."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


# --- the /v1 router ---------------------------------------------------------------------------

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _openai_errors(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApertureError as error:
            return _error_response(error)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


_SCHEMA_REF = "#/components/schemas/{model}"


def _operation_extra(path: str, body: type[BaseModel] | None) -> dict[str, Any]:
    """What the OpenAPI document cannot learn from a handler that takes the bare request: its path
    parameters and its request body."""
    extra: dict[str, Any] = {}
    names = re.findall(r"{(\w+)}", path)
    if names:
        extra["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names
        ]
    if body is not None:
        schema = {"$ref": _SCHEMA_REF.format(model=body.__name__)}
        extra["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return extra


def openapi_schemas() -> dict[str, dict[str, Any]]:
    """The `/v1` request bodies' JSON schemas, and those of the models they use, by name: for the
    OpenAPI document's components (the handlers read their bodies themselves, so FastAPI does not
    see these models; their operations refer to them as `#/components/schemas/<name>`)."""
    schemas: dict[str, dict[str, Any]] = {}
    for _, _, _, _, model in _ROUTES:
        if model is None:
            continue
        schema = model.model_json_schema(ref_template=_SCHEMA_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def openai_handlers(service: GatewayService, max_body_bytes: int) -> dict[str, Handler]:
    """The `/v1` handlers, each a plain `async (request) -> response`: mounted on the whole app's
    router (`build_openai_router`) and, without FastAPI's layers, on the gateway alone."""

    async def _complete(request: Request, kind: Literal["chat", "text"]) -> Response:
        caller = service.authenticate(bearer_token(request))
        raw = await _read_body(request, max_body_bytes)
        if kind == "chat":
            parsed: Any = _parse(ChatBody, raw)
            completion = chat_request(parsed)
        else:
            parsed = _parse(CompletionBody, raw)
            completion = text_request(parsed)
        admitted = await service.admit(caller, completion)
        shape = _Shape(admitted)
        events = service.generate(admitted)
        try:
            first = await anext(events)
        except BaseException:
            await _close(events)
            raise
        if completion.stream:
            include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
            return _EventStream(_stream(shape, first, events, include_usage), events)

        async def collect() -> tuple[str, Event]:
            text, last = first.text, first
            try:
                while not last.done:
                    last = await anext(events)
                    text += last.text
            finally:
                await _close(events)
            return text, last

        if admitted.model.backend.kind is BackendKind.EMBEDDED and not first.done:
            # The engine's time is the costly part: a client that leaves stops its generation.
            collected = await _unless_disconnected(request, collect())
            if collected is None:
                return Response(status_code=499)
            text, last = collected
        else:
            text, last = await collect()
        if last.finish_reason == "content_filter":
            raise ContentBlocked(
                "the answer was withheld by the model's safety policy",
                hint="rephrase the request; repeated refusals are reviewed",
                details={"code": "content_blocked"},
            )
        return JSONResponse(shape.whole(text, last))

    @_openai_errors
    async def list_models(request: Request) -> Response:
        caller = service.authenticate(bearer_token(request))
        data = [
            {"id": m.id, "object": "model", "created": m.created, "owned_by": "aperture"}
            for m in await service.models_for(caller)
        ]
        return JSONResponse({"object": "list", "data": data})

    @_openai_errors
    async def get_model(request: Request) -> Response:
        caller = service.authenticate(bearer_token(request))
        found = await service.resolve(caller, request.path_params["model_id"])
        return JSONResponse({"id": found.id, "object": "model", "created": found.created, "owned_by": "aperture"})

    @_openai_errors
    async def chat_completions(request: Request) -> Response:
        return await _complete(request, "chat")

    @_openai_errors
    async def completions(request: Request) -> Response:
        return await _complete(request, "text")

    return {
        "list_models": list_models,
        "get_model": get_model,
        "chat_completions": chat_completions,
        "completions": completions,
    }


# (path, handler, method, summary, request body model)
_ROUTES: tuple[tuple[str, str, str, str, type[BaseModel] | None], ...] = (
    ("/models", "list_models", "GET", "The models your key may call", None),
    ("/models/{model_id}", "get_model", "GET", "One model your key may call", None),
    ("/chat/completions", "chat_completions", "POST", "Chat completion", ChatBody),
    ("/completions", "completions", "POST", "Text completion", CompletionBody),
)


def build_openai_router(service: GatewayService, max_body_bytes: int) -> APIRouter:
    handlers = openai_handlers(service, max_body_bytes)
    router = APIRouter(prefix="/v1", tags=["gateway (OpenAI-compatible)"])
    for path, name, method, summary, body in _ROUTES:
        router.add_api_route(
            path,
            handlers[name],
            methods=[method],
            summary=summary,
            openapi_extra=_operation_extra(path, body),
        )
    return router


# --- the operators' router (/api/v1/gateway) --------------------------------------------------


class KeyIn(BaseModel):
    organisation: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=200)
    expires_at: datetime | None = None


class KeyOut(BaseModel):
    key_id: str
    name: str
    organisation: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    state: str


class IssuedKeyOut(KeyOut):
    key: str = Field(description="The key text, shown once")


def build_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/gateway", tags=["gateway"])
    gateway = services.gateway

    def key_out(key: Any) -> dict[str, Any]:
        return {
            "key_id": key.key_id,
            "name": key.name,
            "organisation": key.organisation,
            "created_at": key.created_at,
            "expires_at": key.expires_at,
            "revoked_at": key.revoked_at,
            "state": key.state(services.clock.now()),
        }

    @router.get("/keys", response_model=list[KeyOut])
    def list_keys(caller: SignedIn, organisation: str | None = None) -> list[dict[str, Any]]:
        return [key_out(k) for k in gateway.list_keys(caller, organisation)]

    @router.post("/keys", response_model=IssuedKeyOut, status_code=201)
    def issue_key(body: KeyIn, caller: SignedIn) -> dict[str, Any]:
        issued = gateway.issue_key(caller, organisation=body.organisation, name=body.name, expires_at=body.expires_at)
        return {**key_out(issued.key), "key": issued.text}

    @router.delete("/keys/{key_id}", response_model=KeyOut)
    def revoke_key(key_id: str, caller: SignedIn) -> dict[str, Any]:
        return key_out(gateway.revoke_key(caller, key_id))

    @router.get("/backends")
    def list_backends(caller: SignedIn) -> list[dict[str, Any]]:
        rows = []
        for backend in gateway.list_backends(caller):
            health = gateway.health.get(backend.model)
            rows.append(
                {
                    "model": backend.model,
                    "kind": backend.kind.value,
                    "url": backend.url,
                    "remote_model": backend.remote_model,
                    "timeout_s": backend.timeout_s,
                    "healthy": None if health is None else health[0],
                    "health_detail": None if health is None else health[1],
                    "checked_at": None if health is None else health[2],
                }
            )
        return rows

    @router.get("/usage", response_model=None)
    def usage(
        caller: SignedIn,
        organisation: str | None = None,
        since: str | None = Query(None, description="first day, YYYY-MM-DD"),
        until: str | None = Query(None, description="last day, YYYY-MM-DD"),
        format: Literal["json", "csv"] = "json",
    ) -> Response:
        rows = gateway.usage(caller, organisation=organisation, since=since, until=until)
        if format == "csv":
            return PlainTextResponse(
                gateway.usage_csv(rows),
                media_type="text/csv",
                headers={"content-disposition": 'attachment; filename="usage.csv"'},
            )
        return JSONResponse([row.as_dict() for row in rows])

    @router.get("/alerts")
    def alerts(caller: SignedIn, open_only: bool = False) -> list[dict[str, Any]]:
        return [alert.as_dict() for alert in gateway.alerts(caller, open_only=open_only)]

    @router.post("/alerts/{alert_id}/pick-up", status_code=204)
    def pick_up(alert_id: str, caller: SignedIn) -> Response:
        gateway.pick_up_alert(caller, alert_id)
        return Response(status_code=204)

    return router


# --- the gateway's life cycle, and the gateway alone -----------------------------------------


@contextlib.asynccontextmanager
async def gateway_running(service: GatewayService) -> AsyncIterator[None]:
    """Start the meter and the health checks with the server; flush and close with it."""
    await asyncio.to_thread(service.start)
    # The ML stack leaves millions of long-lived objects: moved out of the collector's sight, a
    # full collection no longer stalls every request for tens of milliseconds (p99 latency).
    gc.collect()
    gc.freeze()
    health = asyncio.create_task(service.health_loop())
    try:
        yield
    finally:
        health.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await health
        await asyncio.to_thread(service.meter.flush)
        await service.aclose()


def create_gateway_app(services: Services) -> Starlette:
    """Only `/v1` and `/healthz`, on plain Starlette (without FastAPI's per-request layers): what
    `aperture gateway` serves behind a load balancer."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with gateway_running(services.gateway):
            yield

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__, "role": "gateway"})

    async def missing(request: Request, _: Exception) -> Response:
        return JSONResponse(openai_error(404, f"no route {request.url.path}", "not_found"), status_code=404)

    async def not_allowed(request: Request, _: Exception) -> Response:
        return JSONResponse(
            openai_error(405, f"{request.method} is not allowed on {request.url.path}", "method_not_allowed"),
            status_code=405,
        )

    handlers = openai_handlers(services.gateway, services.settings.gateway_max_body_bytes)
    routes = [Route("/v1" + path, handlers[name], methods=[method]) for path, name, method, _, _ in _ROUTES]
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: missing, 405: not_allowed})
