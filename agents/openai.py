"""Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, Ollama), or a fleet of them.

Retries are the coordinator's job, so the client's own are switched off; its errors are mapped onto
fanout's: timeouts, connection errors, 429 and 5xx are transient, 400/401/403 are not.

With several base URLs (replicas of one model) each call goes to the endpoint with the fewest
requests in flight, so a slow replica gets less work; an endpoint that cannot be reached sits out a
cool-down while others are healthy, and the coordinator's retry lands on a live one.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import openai
import structlog
from pydantic import SecretStr

from .backend import Completion, CompletionRequest, Prices, PromptStyle, estimate_tokens
from .errors import (
    AuthenticationFailed,
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    OutputInvalid,
    RateLimited,
    UserError,
)
from .prompts import render_chat, render_completion, stop_sequences

__all__ = ["EndpointPool", "EndpointStats", "OpenAIBackend", "parse_base_urls", "redact_url"]

logger = structlog.get_logger("fanout")

# Local servers accept any key; the client insists on one.
_NO_KEY = "not-needed"
_OPENAI = "api.openai.com"

Outcome = Literal["ok", "failed", "unreachable", "cancelled"]


def _map_error(exc: openai.OpenAIError) -> BackendError:
    """The fanout error for an `openai` error, keeping the status code."""
    if isinstance(exc, openai.APITimeoutError):
        return BackendTimeout("request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return BackendUnavailable(f"connection failed: {exc}")
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        message = f"HTTP {code}: {exc.message}"
        if code in (401, 403):
            return AuthenticationFailed(message, status_code=code)
        if code == 429:
            return RateLimited(message, status_code=code)
        if code >= 500 or code == 408:
            return BackendUnavailable(message, status_code=code)
        return BackendRejected(message, status_code=code)
    return BackendError(f"{type(exc).__name__}: {exc}")


def _outcome(exc: openai.OpenAIError) -> Outcome:
    """Only a failed connection says the endpoint is gone; a timeout may just be a slow model."""
    if isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError):
        return "unreachable"
    return "failed"


def redact_url(url: str | None) -> str:
    """`url` fit for logs and repr: a password in it (``http://user:pw@host``) becomes ``***``."""
    if url is None:
        return _OPENAI
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def parse_base_urls(base_url: str | Sequence[str] | None) -> tuple[str, ...]:
    """Base URLs from one URL, a comma-separated list (as an env var or option) or a sequence."""
    if base_url is None:
        return ()
    items = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    urls = tuple(u.strip() for u in items if u.strip())
    seen: set[str] = set()
    for url in urls:
        if url in seen:
            raise UserError(f"base URL given twice: {redact_url(url)}")
        seen.add(url)
    return urls


@dataclass(frozen=True, kw_only=True)
class EndpointStats:
    """What one endpoint of the pool has done so far (a snapshot)."""

    url: str
    """Base URL, password redacted."""
    requests: int
    """Calls sent to it."""
    ok: int
    """Calls it answered successfully."""
    failed: int
    """Calls that failed for any reason, unreachable ones included."""
    unreachable: int
    """Calls that could not connect (what puts an endpoint on cool-down)."""
    outstanding: int
    """Calls in flight right now."""
    healthy: bool
    """False while it sits out its cool-down."""


class _Endpoint:
    def __init__(self, index: int, url: str | None) -> None:
        self.index = index
        self.url = url
        self.outstanding = 0
        self.requests = 0
        self.ok = 0
        self.failed = 0
        self.unreachable = 0
        self.down_until = 0.0
        self.last_pick = -1


class EndpointPool:
    """Least-outstanding-requests choice among endpoints, skipping unreachable ones for a while.

    Transport-agnostic (it sees only outcomes), so the choice is testable without a network.

    Args:
        urls: the endpoints (None stands for the client's default, api.openai.com).
        cooldown_s: how long an endpoint that refused a connection is skipped while others are
            healthy. When every endpoint is down, the one due back first is tried rather than
            failing without a try: the coordinator's retries then wait for a replica to return.
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        urls: Sequence[str | None],
        *,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise UserError("an endpoint pool needs at least one endpoint")
        self._endpoints = [_Endpoint(i, url) for i, url in enumerate(urls)]
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._picks = 0
        # Backends are shared by event loops in different threads (run() uses a portal loop).
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._endpoints)

    def acquire(self) -> int:
        """Choose an endpoint for one call and count it as in flight; returns its index."""
        with self._lock:
            now = self._clock()
            healthy = [e for e in self._endpoints if e.down_until <= now]
            if healthy:
                # Ties (e.g. sequential calls) rotate: least recently picked first.
                chosen = min(healthy, key=lambda e: (e.outstanding, e.last_pick))
            else:
                chosen = min(self._endpoints, key=lambda e: (e.down_until, e.outstanding))
            chosen.outstanding += 1
            chosen.requests += 1
            chosen.last_pick = self._picks
            self._picks += 1
            return chosen.index

    def release(self, index: int, outcome: Outcome) -> bool:
        """Record how a call ended; returns True when this outcome just took the endpoint down."""
        with self._lock:
            endpoint = self._endpoints[index]
            endpoint.outstanding -= 1
            if outcome == "ok":
                endpoint.ok += 1
                endpoint.down_until = 0.0  # it answered: healthy again, whatever happened before
                return False
            if outcome == "cancelled":
                return False  # the caller gave up; says nothing about the endpoint
            endpoint.failed += 1
            if outcome != "unreachable":
                return False
            endpoint.unreachable += 1
            return self._take_down(endpoint)

    def mark_down(self, index: int) -> bool:
        """Put an endpoint on cool-down without a call (a failed probe); True if it was healthy."""
        with self._lock:
            return self._take_down(self._endpoints[index])

    def _take_down(self, endpoint: _Endpoint) -> bool:
        now = self._clock()
        was_healthy = endpoint.down_until <= now
        endpoint.down_until = now + self.cooldown_s
        return was_healthy

    def url(self, index: int) -> str | None:
        """The base URL of endpoint `index` (None: the client's default)."""
        return self._endpoints[index].url

    def stats(self) -> list[EndpointStats]:
        """A snapshot of every endpoint, in the order given."""
        with self._lock:
            now = self._clock()
            return [
                EndpointStats(
                    url=redact_url(e.url),
                    requests=e.requests,
                    ok=e.ok,
                    failed=e.failed,
                    unreachable=e.unreachable,
                    outstanding=e.outstanding,
                    healthy=e.down_until <= now,
                )
                for e in self._endpoints
            ]


class OpenAIBackend:
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
        timeout_s: the HTTP client's own timeout (the coordinator also enforces one per call).
        schema_format: how a JSON schema is sent: "json_schema" (OpenAI, vLLM) or "json_object"
            (llama-cpp-python's server, which takes ``{"type": "json_object", "schema": ...}``).
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
        schema_format: Literal["json_schema", "json_object"] = "json_schema",
        cooldown_s: float = 5.0,
    ) -> None:
        model = model or os.environ.get("OPENAI_MODEL")
        if not model:
            raise UserError("no model name: pass --model or set OPENAI_MODEL")
        if endpoint not in ("chat", "completions"):
            raise UserError(f"unknown endpoint '{endpoint}' (use chat or completions)")
        self.name = model
        self.base_urls = parse_base_urls(
            base_url if base_url is not None else os.environ.get("OPENAI_BASE_URL")
        )
        self.base_url: str | None = self.base_urls[0] if self.base_urls else None
        """The first endpoint (the only one unless a fleet was given); None means OpenAI."""
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and self.base_url is None:
            raise UserError(
                "no API key: set OPENAI_API_KEY (or pass --base-url for a local server)"
            )
        self._api_key = SecretStr(key or _NO_KEY)
        self.endpoint = endpoint
        self.prompt_style: PromptStyle = "chat" if endpoint == "chat" else "completion"
        self.context_window = context_window
        self.prices = prices or Prices()
        self.timeout_s = timeout_s
        self.schema_format = schema_format
        self.pool = EndpointPool(self.base_urls or (None,), cooldown_s=cooldown_s)
        # An async client is bound to the loop it first ran on; keep one per loop and endpoint.
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[int, openai.AsyncOpenAI]
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        urls = [redact_url(u) for u in self.base_urls]
        shown = urls[0] if len(urls) == 1 else (urls or None)
        return f"OpenAIBackend(model={self.name!r}, base_url={shown!r}, api_key=***)"

    def stats(self) -> list[EndpointStats]:
        """Requests, failures and health per endpoint, in the order the base URLs were given."""
        return self.pool.stats()

    async def aclose(self) -> None:
        """Close the connections opened from the running event loop (other loops keep theirs).

        Call it before a loop you started yourself (``asyncio.run``) ends; the coordinator's own
        loop lives as long as the process, so ``Coordinator.run`` users need not.
        """
        clients = self._clients.pop(asyncio.get_running_loop(), {})
        await asyncio.gather(*(client.close() for client in clients.values()))

    def _client(self, index: int) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        clients = self._clients.setdefault(loop, {})
        client = clients.get(index)
        if client is None:
            client = clients[index] = openai.AsyncOpenAI(
                api_key=self._api_key.get_secret_value(),
                base_url=self.pool.url(index),
                max_retries=0,
                timeout=self.timeout_s,
            )
        return client

    def count_tokens(self, text: str) -> int:
        """An estimate: the tokenizer lives on the server."""
        return estimate_tokens(text)

    async def check(self) -> None:
        """Fail fast, as a `UserError`, when no endpoint is reachable or any rejects the key.

        In a fleet, unreachable endpoints are only put on cool-down: the run goes on with the rest.
        """
        errors = await asyncio.gather(*(self._probe(i) for i in range(len(self.pool))))
        down: list[str] = []
        for index, error in enumerate(errors):
            where = redact_url(self.pool.url(index))
            if isinstance(error, AuthenticationFailed):
                raise UserError(f"API key rejected by {where} ({error})")
            if isinstance(error, BackendTimeout | BackendUnavailable):
                down.append(f"{where}: {error}")
                if self.pool.mark_down(index):
                    self._log_down(index)
        if len(down) == len(self.pool):
            raise UserError(f"cannot reach {'; '.join(down)}")

    async def _probe(self, index: int) -> BackendError | None:
        try:
            await self._client(index).models.list()
        except openai.OpenAIError as exc:
            return _map_error(exc)  # some servers lack /models; only reachability counts here
        return None

    async def complete(self, request: CompletionRequest) -> Completion:
        """One chat or completions call, on the least busy healthy endpoint."""
        started = time.perf_counter()
        index = self.pool.acquire()
        try:
            if self.endpoint == "chat":
                text, usage = await self._chat(index, request)
            else:
                text, usage = await self._completion(index, request)
        except openai.OpenAIError as exc:
            self._release(index, _outcome(exc))
            raise _map_error(exc) from None
        except BaseException:
            self._release(index, "cancelled")  # a coordinator timeout or cancellation
            raise
        self._release(index, "ok")
        data = None
        if request.json_schema is not None:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise OutputInvalid(f"output is not JSON: {exc}") from None
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
            logger.warning(
                "fleet.endpoint_down",
                url=redact_url(self.pool.url(index)),
                cooldown_s=self.pool.cooldown_s,
            )

    async def _chat(self, index: int, request: CompletionRequest) -> tuple[str, Any]:
        extra: dict[str, Any] = {}
        if request.json_schema is not None and self.schema_format == "json_object":
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
        )
        return response.choices[0].text, response.usage
