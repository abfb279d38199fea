"""Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, Ollama), or a fleet of them.

Retries are the coordinator's job, so the client's own are switched off; its errors are mapped onto
fanout's: timeouts, connection errors, 429 and 5xx are transient, 400/401/403 are not.

With several base URLs (replicas of one model) each call goes to the endpoint with the fewest
requests in flight, so a slow replica gets less work; an endpoint that cannot be reached sits out a
cool-down while others are healthy, and the coordinator's retry lands on a live one (`fleet.py`).

What a server answers is checked, not trusted: a body far beyond what ``max_tokens`` can produce
is cut off unread and refused, and so is an answer with no choices, a list, a web page or an
answer far longer than its budget (`InvalidResponse`); usage figures that are negative or
impossible are replaced by fanout's own count (logged once). An overflow error teaches the backend
its context window when the message states it, as do llama.cpp's ``/props`` and vLLM's
``/models`` at start-up.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import httpx
import httpx2
import openai
from pydantic import SecretStr

from ._classify import error_for_exception, error_for_status, retry_after_s
from ._echo import ECHO_HINT, echo_reason
from ._fleet import CallOutcome, EndpointPool, EndpointStats, parse_base_urls, redact_url
from ._portal import on_portal, run_sync
from ._prompts import render_chat, render_completion, stop_sequences
from ._secrets import register_secret, register_url_secrets, scrub
from ._servers import (
    SchemaFormat,
    ServerInfo,
    completion_schema_body,
    probe_server,
    server_context_window,
)
from ._tokens import Count, TokenCounter, TokenizerUnavailable, tiktoken_count
from .backend import (
    Closeable,
    Completion,
    CompletionRequest,
    Prices,
    PromptStyle,
    parse_structured,
    text_limit,
)
from .errors import (
    AuthenticationFailed,
    BackendClosed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ContextOverflow,
    EndpointMismatch,
    InvalidResponse,
    UserError,
)
from .logs import log_event

__all__ = ["OpenAIBackend", "map_openai_error"]

logger = logging.getLogger(__name__)

# Local servers accept any key; the client insists on one.
_NO_KEY = "not-needed"

_RESPONSE_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "response_limit", default=None
)
"""The most bytes the call being made may receive (set around each model call)."""


def response_limit(max_tokens: int) -> int:
    """Bytes a completion of `max_tokens` tokens may take, JSON and all: far more than any does."""
    return 64 * 1024 + 256 * max_tokens


class _LimitedStream(httpx2.AsyncByteStream):
    """A response body that stops with `InvalidResponse` once it runs past `limit` bytes."""

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._inner:
            received += len(chunk)
            if received > self._limit:
                raise InvalidResponse(
                    f"the answer runs past {self._limit:,} bytes, far beyond its completion "
                    "budget: refused unread"
                )
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _limit_body(response: httpx2.Response) -> None:
    """Response hook: hold the body to the limit of the call being made."""
    limit = _RESPONSE_LIMIT.get()
    if limit is None:
        return
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        await response.aclose()
        raise InvalidResponse(
            f"the answer declares {int(declared):,} bytes, far beyond its completion budget "
            f"({limit:,} bytes at most): refused unread"
        )
    response.stream = _LimitedStream(response.stream, limit)


_shared_http: openai.DefaultAsyncHttpxClient | None = None
_http_users = 0
"""Open backends that have used the shared pool; the last one to close closes it."""


def _http_client() -> openai.DefaultAsyncHttpxClient:
    """One connection pool for every backend and endpoint, on the portal loop like the calls.

    A pool owned by a backend would hand its open sockets to the garbage collector whenever a
    backend that nobody closed (or the event loop it was used from) went away; this one is closed
    when the last backend using it closes, or at interpreter exit. Only the portal loop's thread
    touches it.
    """
    global _shared_http
    if _shared_http is None:
        _shared_http = openai.DefaultAsyncHttpxClient(event_hooks={"response": [_limit_body]})
    return _shared_http


def _join_http_client() -> None:
    """One more backend uses the shared pool (portal loop only)."""
    global _http_users
    _http_users += 1


async def _release_http_client() -> None:
    """One user fewer (portal loop only); the last one closes the pool's sockets."""
    global _shared_http, _http_users
    _http_users -= 1
    if _http_users == 0 and _shared_http is not None:
        pool, _shared_http = _shared_http, None
        await pool.aclose()


@atexit.register
def _close_http_client() -> None:
    """Close the pool's sockets (if it is open) before the interpreter drops them, warning each."""
    if _shared_http is not None:
        with contextlib.suppress(Exception):
            run_sync(asyncio.wait_for(_shared_http.aclose(), timeout=2))


def map_openai_error(exc: openai.OpenAIError | json.JSONDecodeError) -> BackendError:
    """The fanout error for an `openai` error, keeping the status code.

    Servers may echo the request's headers in an error body, so every message is scrubbed of keys.
    Public because LangChain's OpenAI chat models raise the same errors (`LangChainBackend`).
    """
    if isinstance(exc, openai.APITimeoutError):
        return BackendTimeout("request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return BackendUnavailable(scrub(f"connection failed: {exc}"))
    if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError):
        # a 2xx whose body is not the API's JSON (JSONDecodeError: the client could not parse it)
        return InvalidResponse(scrub(f"the answer is not the API's JSON: {exc}"))
    if isinstance(exc, openai.APIStatusError):
        return error_for_status(
            exc.status_code,
            f"HTTP {exc.status_code}: {exc.message}",
            body=exc.body,
            retry_after=retry_after_s(exc.response.headers),
        )
    return error_for_exception(exc)


def cached_tokens(usage: Any, prompt_tokens: int) -> int:
    """Prompt tokens the server says its prompt cache served; never above the prompt.

    OpenAI reports ``usage.prompt_tokens_details.cached_tokens``; a server that says nothing: 0.
    """
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    if not isinstance(cached, int) or cached < 0:
        return 0
    return min(cached, prompt_tokens)


def _first_choice(response: object, part: Literal["message", "text"]) -> str:
    """The first choice's text, or `InvalidResponse` for an answer not shaped like the API's.

    The client builds its objects without validating them, so an empty ``choices``, ``[{}]``, a
    JSON list or a web page served with status 200 arrive as objects missing their fields.
    """
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise InvalidResponse(f"the answer is not the API's JSON: no choices ({_shape(response)})")
    choice = choices[0]
    value = getattr(getattr(choice, "message", None), "content", None)
    if part == "text":
        value = getattr(choice, "text", None)
    elif getattr(choice, "message", None) is None:
        raise InvalidResponse("the answer is not the API's JSON: its first choice has no message")
    if value is None and part == "message":
        return ""  # a message with no content: the model said nothing
    if not isinstance(value, str):
        raise InvalidResponse(
            f"the answer is not the API's JSON: its first choice has no {part} ({_shape(choice)})"
        )
    return value


def _shape(value: object) -> str:
    return type(value).__name__ if not isinstance(value, str) else f"text {value[:40]!r}"


def _outcome(exc: openai.OpenAIError | json.JSONDecodeError) -> CallOutcome:
    """Only a failed connection says the endpoint is gone; a timeout may just be a slow model."""
    if isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError):
        return "unreachable"
    return "failed"


class OpenAIBackend(Closeable):
    """A model behind one OpenAI-compatible HTTP API, or behind several replicas of it.

    Args:
        model: model name; default $OPENAI_MODEL.
        base_url: API root (e.g. http://127.0.0.1:8080/v1), or several (a sequence, or one string
            with commas) to spread calls over replicas of the same model; default $OPENAI_BASE_URL
            (commas allowed too), then OpenAI.
        api_key: default $OPENAI_API_KEY; optional for servers on loopback. The same key is sent to
            every endpoint.
        endpoint: "chat" (chat/completions, instruction models) or "completions" (base models).
        context_window: the model's context in tokens, if known (enables chunking).
        prices: USD per million tokens, for cost accounting.
        timeout_s: the longest any network wait may take: the HTTP client's own timeout and the
            start-up `check` (the coordinator also enforces its own per call).
        schema_format: how a JSON schema is sent: "json_schema" (OpenAI, vLLM, llama.cpp's
            server), "json_object" (llama-cpp-python's server, which takes ``{"type":
            "json_object", "schema": ...}``) or "auto": asked of the server once (`server_info`).
        cooldown_s: how long an endpoint that refused a connection is skipped while others are up.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        endpoint: Literal["chat", "completions"] = "chat",
        context_window: int | None = None,
        prices: Prices | None = None,
        timeout_s: float = 600.0,
        schema_format: Literal["auto", "json_schema", "json_object"] = "auto",
        cooldown_s: float = 5.0,
    ) -> None:
        model = model or os.environ.get("OPENAI_MODEL")
        if not model:
            raise UserError("no model name given, and OPENAI_MODEL is not set", parameter="model")
        if endpoint not in ("chat", "completions"):
            raise UserError(
                f"unknown endpoint '{endpoint}' (use chat or completions)", parameter="endpoint"
            )
        self.name = model
        self.base_urls = parse_base_urls(
            base_url if base_url is not None else os.environ.get("OPENAI_BASE_URL")
        )
        self.base_url: str | None = self.base_urls[0] if self.base_urls else None
        """The first endpoint (the only one unless a fleet was given); None means OpenAI."""
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and self.base_url is None:
            raise UserError(
                "no API key: set OPENAI_API_KEY (a server on your machine needs none: give its "
                "base URL)"
            )
        self._api_key = SecretStr(key or _NO_KEY)
        register_secret(key)
        for url in self.base_urls:  # a password or token in a URL is a key too
            register_url_secrets(url)
        self.endpoint = endpoint
        self.prompt_style: PromptStyle = "chat" if endpoint == "chat" else "completion"
        self.context_window = context_window
        self.prices = prices or Prices()
        self.timeout_s = timeout_s
        if schema_format not in ("auto", "json_schema", "json_object"):
            raise UserError(
                f"unknown schema format '{schema_format}' (use json_schema or json_object)"
            )
        self.schema_format = schema_format
        self._server: ServerInfo | None = None
        self._server_lock = threading.Lock()
        self.tokens = TokenCounter(model, self._find_tokenizer)
        """Counts tokens with the server's tokenizer or tiktoken, else estimates (logged once)."""
        self.pool = EndpointPool(self.base_urls or (None,), cooldown_s=cooldown_s)
        self._clients: dict[int, openai.AsyncOpenAI] = {}
        """One API client per endpoint, all on the shared connection pool (portal loop only)."""
        self._uses_pool = False
        self._closed = False
        self._usage_replaced = False

    def __repr__(self) -> str:
        urls = [redact_url(u) for u in self.base_urls]
        shown = urls[0] if len(urls) == 1 else (urls or None)
        return f"OpenAIBackend(model={self.name!r}, base_url={shown!r}, api_key=***)"

    def stats(self) -> list[EndpointStats]:
        """Requests, failures and health per endpoint, in the order the base URLs were given."""
        return self.pool.stats()

    async def aclose(self) -> None:
        """Drop this backend's API clients; the last open backend closes the shared connections."""
        if not self._closed:
            self._closed = True
            await on_portal(self._aclose())

    async def _aclose(self) -> None:
        self._clients.clear()  # they share the pool, so closing one would close it for all
        if self._uses_pool:
            self._uses_pool = False
            await _release_http_client()

    def _client(self, index: int) -> openai.AsyncOpenAI:
        if self._closed:
            raise BackendClosed(f"the OpenAI backend for {self.name} is closed")
        client = self._clients.get(index)
        if client is None:
            if not self._uses_pool:
                self._uses_pool = True
                _join_http_client()
            client = self._clients[index] = openai.AsyncOpenAI(
                api_key=self._api_key.get_secret_value(),
                base_url=self.pool.url(index),
                max_retries=0,
                timeout=self.timeout_s,
                http_client=_http_client(),
            )
        return client

    def count_tokens(self, text: str) -> int:
        """Exact through the server's tokenizer route (llama.cpp) or tiktoken (OpenAI's models).

        Any other server gets the 4-characters-a-token estimate, with one warning in the log.
        """
        return self.tokens(text)

    def server_info(self) -> ServerInfo:
        """What the (first) server supports: structured-output format and tokenizer; asked once.

        A server that cannot be reached is asked again next time; until then it counts as unknown.
        """
        try:
            return self._probe_server()
        except httpx.HTTPError:
            return ServerInfo(kind="unknown", schema_format="json_schema")

    def _probe_server(self) -> ServerInfo:
        with self._server_lock:
            if self._server is None:
                self._server = probe_server(
                    self.base_url,
                    api_key=self._api_key.get_secret_value(),
                    timeout_s=min(self.timeout_s, 5.0),
                )
            return self._server

    def _find_tokenizer(self) -> Count:
        info = self._probe_server()  # unreachable: the counter estimates, saying why
        if info.kind == "openai":
            return tiktoken_count(self.name)
        counter = info.counter(timeout_s=self.timeout_s)
        if counter is None:
            where = redact_url(self.base_url) if self.base_url else "the server"
            raise TokenizerUnavailable(f"{where} ({info.kind}) has no tokenizer route")
        return counter

    async def _schema_format(self) -> SchemaFormat:
        if self.schema_format != "auto":
            return self.schema_format
        if self._server is not None:
            return self._server.schema_format
        return (await asyncio.to_thread(self.server_info)).schema_format

    async def check(self) -> None:
        """Fail fast, as a `UserError`, when no endpoint is reachable or any rejects the key.

        In a fleet, unreachable endpoints are only put on cool-down: the run goes on with the rest.
        Each probe gives up after `timeout_s`, however slowly a server drips its answer. Without
        a `context_window`, the server is asked for one (llama.cpp ``/props``, vLLM ``/models``).
        """
        errors = await on_portal(self._probe_all())
        down: list[str] = []
        for index, error in enumerate(errors):
            where = redact_url(self.pool.url(index))
            if isinstance(error, AuthenticationFailed):
                raise UserError(f"API key rejected by {where} ({error})")
            if isinstance(error, InvalidResponse):
                raise UserError(
                    f"{where}/models did not answer like an OpenAI-compatible API "
                    f"(is this the API root?): {error}"
                )
            if isinstance(error, BackendTimeout | BackendUnavailable):
                down.append(f"{where}: {error}")
                if self.pool.mark_down(index):
                    self._log_down(index)
        if len(down) == len(self.pool):
            raise UserError(f"cannot reach {'; '.join(down)}")
        if self.context_window is None and self.base_url is not None:
            window = await asyncio.to_thread(
                server_context_window,
                self.base_url,
                api_key=self._api_key.get_secret_value(),
                model=self.name,
                timeout_s=min(self.timeout_s, 10.0),
            )
            self._learn_window(window)

    async def _probe_all(self) -> list[BackendError | None]:
        return await asyncio.gather(*(self._probe(i) for i in range(len(self.pool))))

    async def _probe(self, index: int) -> BackendError | None:
        try:
            await asyncio.wait_for(self._client(index).models.list(), self.timeout_s)
        except (TimeoutError, openai.APITimeoutError):  # whichever deadline fires first
            return BackendTimeout(f"no answer within {self.timeout_s:g}s")
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            return map_openai_error(exc)  # some servers lack /models; only reachability counts here
        return None

    async def complete(self, request: CompletionRequest) -> Completion:
        """One chat or completions call, on the least busy healthy endpoint.

        The call runs on the portal loop, where the connections live, whichever loop awaits it.
        """
        return await on_portal(self._complete(request))

    async def _complete(self, request: CompletionRequest) -> Completion:
        started = time.perf_counter()
        index = self.pool.acquire()
        limit = _RESPONSE_LIMIT.set(response_limit(request.max_tokens))
        try:
            if self.endpoint == "chat":
                text, usage = await self._chat(index, request)
            else:
                text, usage = await self._completion(index, request)
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            self._release(index, _outcome(exc))
            error = map_openai_error(exc)
            if isinstance(error, ContextOverflow):
                self._learn_window(error.context_window)
            raise error from None
        except BackendError:
            self._release(index, "failed")  # the answer was refused (too large, malformed)
            raise
        except BaseException:
            self._release(index, "cancelled")  # a coordinator timeout or cancellation
            raise
        finally:
            _RESPONSE_LIMIT.reset(limit)
        self._release(index, "ok")
        if len(text) > text_limit(request.max_tokens):
            raise InvalidResponse(
                f"the answer holds {len(text):,} characters, far beyond what {request.max_tokens} "
                "tokens can write: refused"
            )
        echo = echo_reason(request.prompt, text) if self.endpoint == "chat" else None
        if echo is not None:
            raise EndpointMismatch(f"the model echoed its prompt ({echo}); {ECHO_HINT}")
        data = parse_structured(request, text)
        prompt_tokens, completion_tokens = self._usage(usage, request, text)
        cached = cached_tokens(usage, prompt_tokens)
        return Completion(
            text=text.strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_prompt_tokens=cached,
            latency_s=time.perf_counter() - started,
            model=self.name,
            data=data,
            cost_usd=self.prices.cost(prompt_tokens, completion_tokens, cached),
        )

    def _usage(self, usage: Any, request: CompletionRequest, text: str) -> tuple[int, int]:
        """(prompt, completion) tokens as the server reported them, if they can be true.

        A count that is missing, not a whole number, negative, or beyond what the call could
        have used (more completion tokens than the budget, more prompt tokens than the prompt
        has bytes) is replaced by fanout's own count, and that is logged once per backend.
        """
        prompt = render_chat(request.prompt) if self.endpoint == "chat" else None
        prompt_text = (
            "\n".join(m["content"] for m in prompt) if prompt else render_completion(request.prompt)
        )
        reported = (
            getattr(usage, "prompt_tokens", None),
            getattr(usage, "completion_tokens", None),
        )
        bounds = (len(prompt_text.encode("utf-8")) + 1024, request.max_tokens + 16)
        if all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= bound
            for n, bound in zip(reported, bounds, strict=True)
        ):
            return reported[0], reported[1]  # type: ignore[return-value]
        if usage is not None and not self._usage_replaced:
            self._usage_replaced = True
            log_event(
                logger,
                logging.WARNING,
                "usage.replaced",
                model=self.name,
                reported=str(reported)[:200],
                hint="the server's token counts are impossible: fanout counts them itself",
            )
        return self.count_tokens(prompt_text), self.count_tokens(text)

    def _learn_window(self, window: int | None) -> None:
        """Take the context window a server stated (in an overflow error, or at start-up)."""
        if window is not None and window > 0 and self.context_window is None:
            self.context_window = window
            log_event(
                logger, logging.INFO, "context_window.learned", model=self.name, tokens=window
            )

    def _release(self, index: int, outcome: CallOutcome) -> None:
        if self.pool.release(index, outcome):
            self._log_down(index)

    def _log_down(self, index: int) -> None:
        if len(self.pool) > 1:  # with one endpoint the error itself says it all
            log_event(
                logger,
                logging.WARNING,
                "fleet.endpoint_down",
                url=redact_url(self.pool.url(index)),
                cooldown_s=self.pool.cooldown_s,
            )

    async def _chat(self, index: int, request: CompletionRequest) -> tuple[str, Any]:
        extra: dict[str, Any] = {}
        schema_format = await self._schema_format() if request.json_schema is not None else None
        if request.json_schema is not None and schema_format == "json_object":
            extra["response_format"] = {"type": "json_object", "schema": request.json_schema}
        elif request.json_schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema},
            }
        response = await self._client(index).chat.completions.create(
            model=self.name,
            messages=render_chat(request.prompt),  # type: ignore[arg-type]
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            **extra,
        )
        return _first_choice(response, "message"), getattr(response, "usage", None)

    async def _completion(self, index: int, request: CompletionRequest) -> tuple[str, Any]:
        response = await self._client(index).completions.create(
            model=self.name,
            prompt=render_completion(request.prompt),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stop=None if request.json_schema else stop_sequences(request.prompt)[:4],
            extra_body=await self._completion_schema(request.json_schema),
        )
        return _first_choice(response, "text"), getattr(response, "usage", None)

    async def _completion_schema(self, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None:
            return None
        kind = self._server.kind if self._server is not None else "unknown"
        return completion_schema_body(schema, await self._schema_format(), kind)
