"""How every model call is made: a concurrency bound, a per-call timeout, and retries of transient errors.

Retries use tenacity's exponential backoff with jitter and fire only on errors that may pass
(timeouts, connection errors, 429, 5xx). A 400/401/403 fails at once: repeating it only burns quota.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from fanout.agents.backend import Backend, Completion, CompletionRequest, Prompt, PromptStyle, Usage
from fanout.agents.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    UserError,
)

from .tracing import call_span

__all__ = ["CallPolicy", "CircuitBreaker", "FailurePolicy", "ModelCaller", "is_transient"]

logger = structlog.get_logger("fanout")


@dataclass(frozen=True, kw_only=True)
class CallPolicy:
    """Limits applied to every model call of a run."""

    max_concurrency: int = 4
    """Model calls in flight at once, over the whole run."""
    timeout_s: float | None = 300.0
    """Deadline for one call attempt; None waits forever."""
    max_attempts: int = 3
    """Attempts per call, the first included; only transient errors are retried."""
    backoff_initial_s: float = 0.5
    """First retry delay; it doubles each retry, plus jitter."""
    backoff_max_s: float = 20.0
    """Cap on one retry delay."""
    max_tokens: int = 128
    """Default completion budget of a call."""
    breaker_threshold: int | None = 5
    """Consecutive connection failures after which calls fail fast; None never trips."""
    breaker_cooldown_s: float = 30.0
    """How long a tripped breaker fails calls before letting one through to test the endpoint."""
    sub_agent_timeout_s: float | None = None
    """Deadline for one whole sub-agent (a user's sub-agent may await more than model calls);
    None allows four full calls with their retries: 4 x timeout_s x max_attempts."""

    @property
    def sub_agent_deadline_s(self) -> float | None:
        """The per-sub-agent deadline in force (None: no deadline)."""
        if self.sub_agent_timeout_s is not None:
            return self.sub_agent_timeout_s
        return None if self.timeout_s is None else 4 * self.timeout_s * self.max_attempts

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise UserError("max_concurrency must be at least 1")
        if self.max_attempts < 1:
            raise UserError("max_attempts must be at least 1")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise UserError("timeout must be positive")
        if self.sub_agent_timeout_s is not None and self.sub_agent_timeout_s <= 0:
            raise UserError("sub-agent timeout must be positive")


@dataclass(frozen=True, kw_only=True)
class FailurePolicy:
    """What a run does when sub-agents fail.

    best_effort answers with what succeeded and names the rest; fail_fast stops at the first
    failed sub-agent; quorum=K needs at least K successful sub-agents to give an answer.
    """

    mode: Literal["best_effort", "fail_fast", "quorum"] = "best_effort"
    """Which behaviour."""
    quorum: int = 0
    """With mode="quorum": the successful sub-agents required."""

    @classmethod
    def parse(cls, spec: str) -> FailurePolicy:
        """From "best_effort", "fail_fast" or "quorum=K"."""
        spec = spec.strip()
        if spec in ("best_effort", "fail_fast"):
            return cls(mode=spec)  # type: ignore[arg-type]
        name, _, value = spec.partition("=")
        if name == "quorum" and value.isdigit() and int(value) > 0:
            return cls(mode="quorum", quorum=int(value))
        raise UserError(
            f"unknown failure policy '{spec}' (use best_effort, fail_fast or quorum=K with K > 0)"
        )


class CircuitBreaker:
    """Stops hammering a dead endpoint.

    After `threshold` connection failures in a row, every call fails at once with one clear message
    until `cooldown_s` has passed; then one call may test the endpoint again.
    """

    def __init__(self, threshold: int | None, cooldown_s: float) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._failures = 0
        self._opened_at: float | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise `CircuitOpen` while the breaker is open."""
        with self._lock:
            if self._opened_at is None:
                return
            if time.monotonic() - self._opened_at >= self.cooldown_s:
                self._opened_at = None  # half-open: the next failure re-opens at once
                self._failures = (self.threshold or 1) - 1
                return
        raise CircuitOpen(
            f"backend unreachable: {self.threshold} connection failures in a row; "
            f"failing calls without trying for {self.cooldown_s:g}s"
        )

    def record(self, exc: BaseException | None) -> None:
        """Count a connection failure, or reset on any answer."""
        with self._lock:
            if exc is None or not isinstance(exc, BackendUnavailable):
                if exc is None:
                    self._failures = 0
                return
            if isinstance(exc, CircuitOpen):
                return
            self._failures += 1
            if self.threshold is not None and self._failures >= self.threshold:
                self._opened_at = time.monotonic()


def is_transient(exc: BaseException) -> bool:
    """Whether retrying `exc` can help."""
    return isinstance(exc, BackendError) and exc.transient


class ModelCaller:
    """The `ModelAccess` handed to one sub-agent (or to reduce/synthesis): calls under the run's limits.

    It counts what the calls cost and how many attempts they took, and logs one event per attempt.
    """

    def __init__(
        self,
        backend: Backend,
        policy: CallPolicy,
        limiter: asyncio.Semaphore,
        *,
        tags: dict[str, str],
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._backend = backend
        self._policy = policy
        self._limiter = limiter
        self._breaker = breaker
        self._tags = tags
        self._log = logger.bind(**tags)
        self.usage = Usage()
        """What the successful calls cost."""
        self.attempts = 0
        """Attempts made, retries included."""

    @property
    def prompt_style(self) -> PromptStyle:
        """The backend's prompt style."""
        return self._backend.prompt_style

    @property
    def context_window(self) -> int | None:
        """The backend's context window."""
        return self._backend.context_window

    def count_tokens(self, text: str) -> int:
        """The backend's token count."""
        return self._backend.count_tokens(text)

    async def complete(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        """One call: bounded, timed out, retried on transient errors only."""
        request = CompletionRequest(
            prompt=prompt,
            max_tokens=max_tokens or self._policy.max_tokens,
            json_schema=json_schema,
            tags=self._tags,
        )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=self._policy.backoff_initial_s,
                max=self._policy.backoff_max_s,
                jitter=self._policy.backoff_initial_s,
            ),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                completion = await self._attempt(request, attempt.retry_state.attempt_number)
        self.usage = self.usage + completion.usage
        return completion

    async def _attempt(self, request: CompletionRequest, number: int) -> Completion:
        self.attempts += 1
        started = time.perf_counter()
        try:
            async with self._limiter:
                if self._breaker is not None:
                    self._breaker.check()  # after queueing: the endpoint may have died meanwhile
                try:
                    completion = await call_span(
                        request,
                        number,
                        self._backend.name,
                        lambda: asyncio.wait_for(
                            self._backend.complete(request), self._policy.timeout_s
                        ),
                    )
                except TimeoutError as exc:
                    raise BackendTimeout(f"no answer within {self._policy.timeout_s:g}s") from exc
        except Exception as exc:
            if self._breaker is not None:
                self._breaker.record(exc)
            last = number >= self._policy.max_attempts or not is_transient(exc)
            self._log.warning(
                "sub_agent.call",
                attempt=number,
                status="failed" if last else "retrying",
                error=f"{type(exc).__name__}: {exc}",
                latency_s=round(time.perf_counter() - started, 4),
            )
            raise
        if self._breaker is not None:
            self._breaker.record(None)
        self._log.info(
            "sub_agent.call",
            attempt=number,
            status="ok",
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_s=round(completion.latency_s, 4),
        )
        return completion
