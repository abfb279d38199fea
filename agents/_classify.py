"""Which fanout error a provider's exception is: transient (retried) or permanent.

Every HTTP-speaking client reports a status somewhere: ``status_code`` (openai, anthropic, mistral,
ollama and most httpx-based SDKs), ``response.status_code`` (httpx, requests), ``status``
(aiohttp) or an integer ``code`` (google-api-core). Reading those, and the exception chain behind
a wrapper (LangChain re-raises some provider errors in its own classes), classifies any provider's
error without importing its SDK: 429 and 5xx are transient, other 4xx permanent.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from ._secrets import scrub
from .errors import (
    AuthenticationFailed,
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ContextOverflow,
    RateLimited,
)

__all__ = [
    "context_window_in",
    "error_for_exception",
    "error_for_status",
    "retry_after_s",
    "status_code_of",
]

_OVERFLOW = re.compile(
    r"context[ _-]?(length|window|size)|exceed_context|too many tokens|prompt is too long",
    re.IGNORECASE,
)
"""How servers say a prompt does not fit: OpenAI and vLLM ("maximum context length is N"),
llama-cpp-python ("exceed context window of N"), llama.cpp ("exceed_context_size_error")."""
_WINDOW = re.compile(
    r"(?:maximum context length is|context window of|context size[^\d]{0,20}|\bn_ctx\W{0,4})"
    r"\s*(\d{2,9})",
    re.IGNORECASE,
)

_STATUS_ATTRIBUTES = ("status_code", "status", "http_status", "code")


def error_for_status(
    code: int, message: str, *, body: Any = None, retry_after: float | None = None
) -> BackendError:
    """The fanout error for an HTTP status: 401/403 auth, 429 rate limit, 408/5xx unavailable.

    A 400/413/422 saying the prompt is too long is a `ContextOverflow`, with the window when the
    error gives it (in its text or, llama.cpp's server, as ``n_ctx`` in its body). Servers may echo
    the request's headers in an error body, so the message is scrubbed of keys.
    """
    message = scrub(message)
    if code in (401, 403):
        return AuthenticationFailed(message, status_code=code)
    if code == 429:
        return RateLimited(message, status_code=code, retry_after_s=retry_after)
    if code >= 500 or code == 408:
        return BackendUnavailable(message, status_code=code, retry_after_s=retry_after)
    if code in (400, 413, 422):
        detail = f"{message} {json.dumps(body, default=str)[:2000] if body is not None else ''}"
        if _OVERFLOW.search(detail):
            return ContextOverflow(
                message, status_code=code, context_window=context_window_in(detail)
            )
    return BackendRejected(message, status_code=code)


def context_window_in(text: str) -> int | None:
    """The context window an overflow error states ("maximum context length is 2048"), if any."""
    match = _WINDOW.search(text)
    return int(match.group(1)) if match else None


def retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a ``Retry-After`` (or ``retry-after-ms``) header asks to wait; None without one.

    A date in the past, or a value that is no number of seconds, counts as none.
    """
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = math.nan
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = when - time.time()
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _status(exc: BaseException) -> int | None:
    for holder in (exc, getattr(exc, "response", None)):
        for attribute in _STATUS_ATTRIBUTES:
            value = getattr(holder, attribute, None)
            # bool is an int; HTTP statuses are 100-599, which also rules out errno-style codes.
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from, innermost last (cycles cut)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status an exception (or one it was raised from) carries, if any."""
    for link in _chain(exc):
        code = _status(link)
        if code is not None:
            return code
    return None


def _named(exc: BaseException, *words: str) -> bool:
    names = [cls.__name__.lower() for cls in type(exc).__mro__]
    return any(word in name for name in names for word in words)


def error_for_exception(exc: BaseException) -> BackendError:
    """Classify any client library's exception; an unknown one is permanent, never retried."""
    if isinstance(exc, BackendError):
        return exc
    message = scrub(f"{type(exc).__name__}: {exc}".strip().rstrip(":"))
    code = status_code_of(exc)
    if code is not None:
        response = next((r for e in _chain(exc) if (r := getattr(e, "response", None))), None)
        headers = getattr(response, "headers", None)
        return error_for_status(
            code,
            f"HTTP {code}: {exc}",
            body=next((b for e in _chain(exc) if (b := getattr(e, "body", None))), None),
            retry_after=retry_after_s(headers) if isinstance(headers, Mapping) else None,
        )
    chain = _chain(exc)
    if any(isinstance(e, TimeoutError) or _named(e, "timeout") for e in chain):
        return BackendTimeout(message)
    if any(_named(e, "ratelimit") for e in chain):
        return RateLimited(message)
    if any(isinstance(e, ConnectionError) or _named(e, "connect", "networkerror") for e in chain):
        return BackendUnavailable(message)
    return BackendError(message)
