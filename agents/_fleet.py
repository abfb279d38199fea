"""Spreading calls over replicas of one model: least outstanding requests, with per-endpoint health.

`EndpointPool` sees only how each call ended, never the transport, so the choice is testable without
a network: the backend asks it for an endpoint before a call and reports the outcome after. An
endpoint whose connection failed sits out a cool-down while others are healthy; one that answers,
even with an error, is reachable and stays in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ._secrets import redact_url as redact_credentials
from .errors import UserError

__all__ = ["CallOutcome", "EndpointPool", "EndpointStats", "parse_base_urls", "redact_url"]

_OPENAI = "api.openai.com"

CallOutcome = Literal["ok", "failed", "unreachable", "cancelled"]
"""How a call ended: answered; failed while reachable (4xx/5xx, timeout, bad output); could not
connect; or abandoned by its caller (a coordinator timeout), which says nothing about the endpoint."""


def redact_url(url: str | None) -> str:
    """`url` fit for logs and repr: its user part and secret query values become ``***``."""
    if url is None:
        return _OPENAI
    return redact_credentials(url)


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

    def release(self, index: int, outcome: CallOutcome) -> bool:
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
