"""Small HTTP exchanges with a total deadline and a size limit, callable from any thread.

httpx's timeouts bound each wait for a byte, not an exchange: a server that drips one byte a
second keeps a request alive forever under ``timeout=3`` (a tokenizer route doing so hung a
``--dry-run`` for 300 s). The exchanges here (probing a server, its tokenizer) run on an event
loop of their own under ``asyncio.timeout``, which bounds the whole exchange, headers and body
alike, and stop reading past `max_bytes`. A loop of their own, not fanout's portal loop: they are
made from synchronous code that may itself be running on the portal loop (the split node).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

__all__ = ["BoundedResponse", "ResponseTooLarge", "request"]

T = TypeVar("T")


class ResponseTooLarge(httpx.HTTPError):
    """The response body ran past the size limit (nothing beyond it was read)."""

    def __init__(self, url: str, max_bytes: int) -> None:
        super().__init__(f"the answer from {url} is larger than {max_bytes:,} bytes")


@dataclass(frozen=True)
class BoundedResponse:
    """A response read whole within the deadline and the size limit."""

    status_code: int
    """The HTTP status."""
    content: bytes
    """The body."""


_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_client: httpx.AsyncClient | None = None


def _start() -> tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]:
    global _loop, _client
    with _lock:
        if _loop is None or _client is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="fanout-http", daemon=True).start()
            _loop, _client = loop, httpx.AsyncClient()
            atexit.register(_close)
        return _loop, _client


def _close() -> None:
    """Close the pool's sockets at exit (left open, each would warn)."""
    if _loop is not None and _client is not None and not _loop.is_closed():
        future = asyncio.run_coroutine_threadsafe(_client.aclose(), _loop)
        try:
            future.result(timeout=2)
        except Exception:  # exiting: nothing to be done about a pool that will not close
            pass


def _run(coro: Coroutine[Any, Any, T]) -> T:
    loop, _ = _start()
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def request(
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
    deadline_s: float,
    max_bytes: int = 1 << 20,
) -> BoundedResponse:
    """Make one exchange, whole, within `deadline_s` seconds and `max_bytes` of body.

    Raises:
        httpx.TimeoutException: the exchange did not finish within the deadline.
        ResponseTooLarge: the body is longer than `max_bytes`.
        httpx.HTTPError: the server could not be reached.
    """
    _, client = _start()
    return _run(_exchange(client, method, url, json, headers, deadline_s, max_bytes))


async def _exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    json: Any,
    headers: dict[str, str] | None,
    deadline_s: float,
    max_bytes: int,
) -> BoundedResponse:
    try:
        async with asyncio.timeout(deadline_s):
            async with client.stream(
                method, url, json=json, headers=headers, timeout=deadline_s
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():  # decoded: a zip bomb counts too
                    body += chunk
                    if len(body) > max_bytes:
                        raise ResponseTooLarge(url, max_bytes)
                return BoundedResponse(response.status_code, bytes(body))
    except TimeoutError:
        raise httpx.ReadTimeout(f"no whole answer from {url} within {deadline_s:g} s") from None
