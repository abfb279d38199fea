"""Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp server, Ollama) through the `openai` client.

Retries are the coordinator's job, so the client's own are switched off; its errors are mapped onto
fanout's: timeouts, connection errors, 429 and 5xx are transient, 400/401/403 are not.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import weakref
from typing import Any, Literal

import openai
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

__all__ = ["OpenAIBackend"]

# Local servers accept any key; the client insists on one.
_NO_KEY = "not-needed"


def _map_error(exc: openai.OpenAIError) -> BackendError:
    """fanout's error for an `openai` error, keeping the status code."""
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


class OpenAIBackend:
    """A model behind an OpenAI-compatible HTTP API.

    Args:
        model: model name; default $OPENAI_MODEL.
        base_url: API root (e.g. http://127.0.0.1:8080/v1); default $OPENAI_BASE_URL, then OpenAI.
        api_key: default $OPENAI_API_KEY; optional for servers on loopback.
        endpoint: "chat" (chat/completions, instruction models) or "completions" (base models).
        context_window: the model's context in tokens, if known (enables chunking).
        prices: USD per million tokens, for cost accounting.
        timeout_s: the HTTP client's own timeout (the coordinator also enforces one per call).
        schema_format: how a JSON schema is sent: "json_schema" (OpenAI, vLLM) or "json_object"
            (llama-cpp-python's server, which takes ``{"type": "json_object", "schema": ...}``).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        endpoint: Literal["chat", "completions"] = "chat",
        context_window: int | None = None,
        prices: Prices | None = None,
        timeout_s: float = 600.0,
        schema_format: Literal["json_schema", "json_object"] = "json_schema",
    ) -> None:
        model = model or os.environ.get("OPENAI_MODEL")
        if not model:
            raise UserError("no model name: pass --model or set OPENAI_MODEL")
        if endpoint not in ("chat", "completions"):
            raise UserError(f"unknown endpoint '{endpoint}' (use chat or completions)")
        self.name = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and self.base_url is None:
            raise UserError("no API key: set OPENAI_API_KEY (or pass --base-url for a local server)")
        self._api_key = SecretStr(key or _NO_KEY)
        self.endpoint = endpoint
        self.prompt_style: PromptStyle = "chat" if endpoint == "chat" else "completion"
        self.context_window = context_window
        self.prices = prices or Prices()
        self.timeout_s = timeout_s
        self.schema_format = schema_format
        # An async client is bound to the loop it first ran on; keep one per loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI]
        self._clients = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.name!r}, base_url={self.base_url!r}, api_key=***)"

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = openai.AsyncOpenAI(
                api_key=self._api_key.get_secret_value(),
                base_url=self.base_url,
                max_retries=0,
                timeout=self.timeout_s,
            )
        return client

    def count_tokens(self, text: str) -> int:
        """An estimate: the tokenizer lives on the server."""
        return estimate_tokens(text)

    async def check(self) -> None:
        """Fail fast, as a `UserError`, when the endpoint is unreachable or rejects the key."""
        where = self.base_url or "api.openai.com"
        try:
            await self._client().models.list()
        except openai.OpenAIError as exc:
            error = _map_error(exc)
            if isinstance(error, AuthenticationFailed):
                raise UserError(f"API key rejected by {where} ({error})") from None
            if isinstance(error, BackendTimeout | BackendUnavailable):
                raise UserError(f"cannot reach {where}: {error}") from None
            # Some servers lack /models; a real call will tell.

    async def complete(self, request: CompletionRequest) -> Completion:
        """One chat or completions call."""
        started = time.perf_counter()
        try:
            if self.endpoint == "chat":
                text, usage = await self._chat(request)
            else:
                text, usage = await self._completion(request)
        except openai.OpenAIError as exc:
            raise _map_error(exc) from None
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

    async def _chat(self, request: CompletionRequest) -> tuple[str, Any]:
        extra: dict[str, Any] = {}
        if request.json_schema is not None and self.schema_format == "json_object":
            extra["response_format"] = {"type": "json_object", "schema": request.json_schema}
        elif request.json_schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema},
            }
        response = await self._client().chat.completions.create(
            model=self.name,
            messages=render_chat(request.prompt),  # type: ignore[arg-type]
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            **extra,
        )
        return response.choices[0].message.content or "", response.usage

    async def _completion(self, request: CompletionRequest) -> tuple[str, Any]:
        response = await self._client().completions.create(
            model=self.name,
            prompt=render_completion(request.prompt),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stop=None if request.json_schema else stop_sequences(request.prompt)[:4],
        )
        return response.choices[0].text, response.usage
