"""Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, Ollama), or a fleet of them.

Retries are the coordinator's job, so the client's own are switched off; its errors are mapped onto
fanout's: timeouts, connection errors, 429 and 5xx are transient, 400/401/403 are not.

With several base URLs (replicas of one model) each call goes to the endpoint with the fewest
requests in flight, so a slow replica gets less work; an endpoint that cannot be reached sits out a
cool-down while others are healthy, and the coordinator's retry lands on a live one (`fleet.py`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

import httpx
import openai
from pydantic import SecretStr

from .backend import (
    Closeable,
    Completion,
    CompletionRequest,
    Prices,
    PromptStyle,
    parse_structured,
)
from .classify import error_for_exception, error_for_status
from .echo import ECHO_HINT, echo_reason
from .errors import (
    AuthenticationFailed,
    BackendClosed,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    EndpointMismatch,
    InvalidResponse,
    UserError,
)
from .fleet import EndpointPool, EndpointStats, Outcome, parse_base_urls, redact_url
from .logs import log_event
from .portal import on_portal, run_sync
from .prompts import render_chat, render_completion, stop_sequences
from .secrets import register_secret, scrub
from .servers import SchemaFormat, ServerInfo, completion_schema_body, probe_server
from .tokens import Count, TokenCounter, TokenizerUnavailable, tiktoken_count

__all__ = ["OpenAIBackend", "map_openai_error"]

logger = logging.getLogger(__name__)

# Local servers accept any key; the client insists on one.
_NO_KEY = "not-needed"

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
        _shared_http = openai.DefaultAsyncHttpxClient()
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
        return error_for_status(exc.status_code, f"HTTP {exc.status_code}: {exc.message}")
    return error_for_exception(exc)


def _outcome(exc: openai.OpenAIError | json.JSONDecodeError) -> Outcome:
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
                self._server = probe_server(self.base_url, api_key=self._api_key.get_secret_value())
            return self._server

    def _find_tokenizer(self) -> Count:
        info = self._probe_server()  # unreachable: the counter estimates, saying why
        if info.kind == "openai":
            return tiktoken_count(self.name)
        counter = info.counter()
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
        Each probe gives up after `timeout_s`, however slowly a server drips its answer.
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
        try:
            if self.endpoint == "chat":
                text, usage = await self._chat(index, request)
            else:
                text, usage = await self._completion(index, request)
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            self._release(index, _outcome(exc))
            raise map_openai_error(exc) from None
        except BaseException:
            self._release(index, "cancelled")  # a coordinator timeout or cancellation
            raise
        self._release(index, "ok")
        echo = echo_reason(request.prompt, text) if self.endpoint == "chat" else None
        if echo is not None:
            raise EndpointMismatch(f"the model echoed its prompt ({echo}); {ECHO_HINT}")
        data = parse_structured(request, text)
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        return Completion(
            text=text.strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=time.perf_counter() - started,
            model=self.name,
            data=data,
            cost_usd=self.prices.cost(prompt_tokens, completion_tokens),
        )

    def _release(self, index: int, outcome: Outcome) -> None:
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
        return response.choices[0].message.content or "", response.usage

    async def _completion(self, index: int, request: CompletionRequest) -> tuple[str, Any]:
        response = await self._client(index).completions.create(
            model=self.name,
            prompt=render_completion(request.prompt),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stop=None if request.json_schema else stop_sequences(request.prompt)[:4],
            extra_body=await self._completion_schema(request.json_schema),
        )
        return response.choices[0].text, response.usage

    async def _completion_schema(self, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None:
            return None
        kind = self._server.kind if self._server is not None else "unknown"
        return completion_schema_body(schema, await self._schema_format(), kind)
