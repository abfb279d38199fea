"""Which fanout error a provider's exception is: transient (retried) or permanent.

Every HTTP-speaking client reports a status somewhere: ``status_code`` (openai, anthropic, mistral,
ollama and most httpx-based SDKs), ``response.status_code`` (httpx, requests), ``status``
(aiohttp) or an integer ``code`` (google-api-core). Reading those, and the exception chain behind
a wrapper (LangChain re-raises some provider errors in its own classes), classifies any provider's
error without importing its SDK: 429 and 5xx are transient, other 4xx permanent.
"""

from __future__ import annotations

from .errors import (
    AuthenticationFailed,
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    RateLimited,
)
from .secrets import scrub

__all__ = ["error_for_exception", "error_for_status", "status_code_of"]

_STATUS_ATTRIBUTES = ("status_code", "status", "http_status", "code")


def error_for_status(code: int, message: str) -> BackendError:
    """The fanout error for an HTTP status: 401/403 auth, 429 rate limit, 408/5xx unavailable.

    Servers may echo the request's headers in an error body, so the message is scrubbed of keys.
    """
    message = scrub(message)
    if code in (401, 403):
        return AuthenticationFailed(message, status_code=code)
    if code == 429:
        return RateLimited(message, status_code=code)
    if code >= 500 or code == 408:
        return BackendUnavailable(message, status_code=code)
    return BackendRejected(message, status_code=code)


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
        return error_for_status(code, f"HTTP {code}: {exc}")
    chain = _chain(exc)
    if any(isinstance(e, TimeoutError) or _named(e, "timeout") for e in chain):
        return BackendTimeout(message)
    if any(_named(e, "ratelimit") for e in chain):
        return RateLimited(message)
    if any(isinstance(e, ConnectionError) or _named(e, "connect", "networkerror") for e in chain):
        return BackendUnavailable(message)
    return BackendError(message)
