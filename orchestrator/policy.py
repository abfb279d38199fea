"""How every model call is made: a concurrency bound, a per-call timeout, and retries of transient errors.

Retries back off exponentially with jitter and fire only on errors that may pass
(timeouts, connection errors, 429, 5xx). A 400/401/403 fails at once: repeating it only burns quota.
A server's ``Retry-After`` (on a 429 or 503) is honoured: the retry waits at least that long, and
a wait longer than one call's deadline is not made at all (the call fails, saying so).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from fanout.agents._prompts import prompt_text
from fanout.agents._secrets import scrub
from fanout.agents.backend import (
    Backend,
    Completion,
    CompletionRequest,
    Prices,
    Prompt,
    PromptStyle,
    Usage,
)
from fanout.agents.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    UserError,
)
from fanout.agents.logs import log_event

from ._tracing import call_span
from .errors import BudgetExceeded

if TYPE_CHECKING:
    from .context import RunContext

__all__ = ["CallPolicy", "CircuitBreaker", "FailurePolicy", "ModelCaller", "is_transient"]

logger = logging.getLogger(__name__)


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
    """Consecutive connection failures or server errors (5xx) after which calls fail fast; None
    never trips."""
    breaker_cooldown_s: float = 30.0
    """How long a tripped breaker fails calls before letting one through to test the endpoint."""
    sub_agent_timeout_s: float | None = None
    """Deadline on the time a sub-agent spends outside its model calls (a user's sub-agent may
    await anything); model calls, queueing for them included, are bounded by `timeout_s` and the
    retries instead, so a long queue behind a busy model never counts. None: `timeout_s`."""
    budget_tokens: int | None = None
    """Most tokens (prompt plus completion) one run may spend; None: no limit. A call that could
    pass it (its prompt counted, its completion budget assumed spent) is not made."""
    budget_usd: float | None = None
    """Most dollars one run may spend at the backend's prices; None: no limit."""

    @property
    def sub_agent_deadline_s(self) -> float | None:
        """The per-sub-agent deadline in force (None: no deadline)."""
        if self.sub_agent_timeout_s is not None:
            return self.sub_agent_timeout_s
        return self.timeout_s

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise UserError(
                f"must be at least 1, not {self.max_concurrency}", parameter="max_concurrency"
            )
        if self.max_attempts < 1:
            raise UserError(
                f"must be at least 1, not {self.max_attempts}", parameter="max_attempts"
            )
        if self.timeout_s is not None and not (
            math.isfinite(self.timeout_s) and self.timeout_s > 0
        ):
            raise UserError(
                f"must be a positive, finite number of seconds (or None), not {self.timeout_s}",
                parameter="timeout_s",
            )
        if self.max_tokens < 1:
            raise UserError(f"must be at least 1, not {self.max_tokens}", parameter="max_tokens")
        seconds = self.sub_agent_timeout_s
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise UserError(
                f"must be a positive, finite number of seconds (or None), not {seconds}",
                parameter="sub_agent_timeout_s",
            )
        if self.budget_tokens is not None and self.budget_tokens < 1:
            raise UserError(
                f"must be at least 1, not {self.budget_tokens}", parameter="budget_tokens"
            )
        dollars = self.budget_usd
        if dollars is not None and not (math.isfinite(dollars) and dollars > 0):
            raise UserError(
                f"must be a positive, finite number of dollars, not {dollars}",
                parameter="budget_usd",
            )


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
    """Stops hammering a dead or failing endpoint.

    After `threshold` connection failures or server errors (5xx) in a row, every call fails at once
    with one message saying which it was, until `cooldown_s` has passed; then one call may test the
    endpoint again.
    """

    def __init__(self, threshold: int | None, cooldown_s: float) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._failures = 0
        self._server_errors = 0
        self._last_error = ""
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
                f"{self._what()} (last: {self._last_error}); "
                f"failing calls without trying for {self.cooldown_s:g}s"
            )

    def _what(self) -> str:
        """What tripped the breaker, in words: connection failures, server errors, or both."""
        n, server = self._failures, min(self._server_errors, self._failures)
        if server == 0:
            return f"backend unreachable: {n} connection failures in a row"
        if server == n:
            return f"backend failing: {n} server errors in a row"
        return (
            f"backend failing: {n} failed calls in a row ({server} server errors, "
            f"{n - server} connection failures)"
        )

    def record(self, exc: BaseException | None) -> None:
        """Count a connection failure or server error; any answer resets the count."""
        with self._lock:
            if exc is None or not isinstance(exc, BackendUnavailable):
                if exc is None:
                    self._failures = self._server_errors = 0
                return
            if isinstance(exc, CircuitOpen):
                return
            self._failures += 1
            self._server_errors += exc.status_code is not None  # it answered, with a 5xx
            self._last_error = scrub(str(exc))
            if self.threshold is not None and self._failures >= self.threshold:
                self._opened_at = time.monotonic()


def is_transient(exc: BaseException) -> bool:
    """Whether retrying `exc` can help."""
    return isinstance(exc, BackendError) and exc.transient


def _retry_after(exc: BaseException | None) -> float | None:
    return exc.retry_after_s if isinstance(exc, BackendError) else None


class ModelCaller:
    """The `ModelAccess` of one scope (a sub-agent, reduce, synthesis): calls under the run's limits.

    It counts what the calls cost and how many attempts they took, logs one event per attempt, and
    tells the hooks of the context it is bound to about each attempt.
    """

    def __init__(
        self,
        backend: Backend,
        policy: CallPolicy,
        limiter: AbstractAsyncContextManager[Any],
        *,
        tags: dict[str, str],
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._backend = backend
        self._policy = policy
        self._in_calls_s = 0.0
        # Calls on one caller may overlap (a synthesis round's batches run together): the clock
        # runs while at least one is in flight, so overlapping calls are counted once.
        self._in_call_since: float | None = None
        self._in_flight = 0
        self._limiter = limiter
        self._breaker = breaker
        self._tags = tags
        self.usage = Usage()
        """What the successful calls cost."""
        self.attempts = 0
        """Attempts made, retries included."""
        self._ctx: RunContext[Any] | None = None

    def bind(self, ctx: RunContext[Any]) -> None:
        """Serve `ctx`: its hooks hear of each attempt, its meter counts each call."""
        self._ctx = ctx

    @property
    def max_tokens(self) -> int:
        """The policy's completion budget, used when a call names none."""
        return self._policy.max_tokens

    @property
    def token_offsets(self) -> Callable[[str], Sequence[int]] | None:
        """The backend's tokenizer as token start offsets, when it has one (faster chunking)."""
        offsets: Callable[[str], Sequence[int]] | None = getattr(
            self._backend, "token_offsets", None
        )
        return offsets

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
        backoff = wait_exponential_jitter(
            multiplier=self._policy.backoff_initial_s,
            max=self._policy.backoff_max_s,
            jitter=self._policy.backoff_initial_s,
        )

        def wait(state: RetryCallState) -> float:
            """The backoff, or longer when the server said how long (``Retry-After``)."""
            asked = _retry_after(state.outcome.exception() if state.outcome else None)
            return max(backoff(state), asked or 0.0)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.max_attempts),
            wait=wait,
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        if self._in_flight == 0:
            self._in_call_since = time.monotonic()
        self._in_flight += 1
        try:
            async for attempt in retrying:
                with attempt:
                    completion = await self._attempt(request, attempt.retry_state.attempt_number)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._in_call_since is not None:
                self._in_calls_s += time.monotonic() - self._in_call_since
                self._in_call_since = None
        self.usage = self.usage + completion.usage
        return completion

    def time_outside_calls(self, since: float) -> float:
        """Seconds since `since` (a `time.monotonic()` value) not spent in this caller's calls."""
        now = time.monotonic()
        in_calls = self._in_calls_s
        if self._in_call_since is not None:
            in_calls += now - self._in_call_since
        return now - since - in_calls

    def _within_patience(self, exc: Exception) -> Exception:
        """`exc`, or a final error when the server asks to wait longer than one call's deadline."""
        asked = _retry_after(exc)
        limit = self._policy.timeout_s or self._policy.backoff_max_s
        if asked is None or asked <= limit or not isinstance(exc, BackendError):
            return exc
        return BackendError(
            f"{exc} (the server asks to retry after {asked:g} s, longer than the {limit:g} s "
            "deadline of a call: not retried)",
            status_code=exc.status_code,
        )

    async def _timed(self, request: CompletionRequest) -> Completion:
        async with asyncio.timeout(self._policy.timeout_s):
            return await self._backend.complete(request)

    def _reserve(self, request: CompletionRequest) -> tuple[int, float]:
        """Hold what this call may spend against the run's budget, or refuse to make it.

        Raises:
            BudgetExceeded: the call could take the run past its token or dollar budget.
        """
        policy, ctx = self._policy, self._ctx
        if ctx is None or (policy.budget_tokens is None and policy.budget_usd is None):
            return 0, 0.0
        style = self._backend.prompt_style
        prompt = self._backend.count_tokens(prompt_text(request.prompt, style))
        tokens = prompt + request.max_tokens
        prices: Prices | None = getattr(self._backend, "prices", None)
        usd = prices.cost(prompt, request.max_tokens) if prices is not None else 0.0
        meter = ctx.meter
        with meter.lock:
            spent = meter.total.total_tokens + meter.reserved_tokens
            if policy.budget_tokens is not None and spent + tokens > policy.budget_tokens:
                raise BudgetExceeded(
                    f"this call (~{tokens:,} tokens) would take the run past its budget of "
                    f"{policy.budget_tokens:,} tokens ({spent:,} spent or held)"
                )
            paid = meter.total.cost_usd + meter.reserved_usd
            if policy.budget_usd is not None and paid + usd > policy.budget_usd:
                raise BudgetExceeded(
                    f"this call (~${usd:.4f}) would take the run past its budget of "
                    f"${policy.budget_usd:.4f} (${paid:.4f} spent or held)"
                )
            meter.reserved_tokens += tokens
            meter.reserved_usd += usd
        return tokens, usd

    def _release(self, tokens: int, usd: float) -> None:
        if self._ctx is not None and (tokens or usd):
            with self._ctx.meter.lock:
                self._ctx.meter.reserved_tokens -= tokens
                self._ctx.meter.reserved_usd -= usd

    async def _hooked(self, request: CompletionRequest, number: int) -> Completion:
        """One attempt between the bound context's call hooks."""
        ctx = self._ctx
        if ctx is not None:
            await ctx.hooks.on_call_start(ctx, request)
        try:
            completion = await call_span(
                request.max_tokens, number, self._backend.name, lambda: self._timed(request)
            )
        except TimeoutError as exc:
            error = BackendTimeout(f"no answer within {self._policy.timeout_s:g}s")
            if ctx is not None:
                await ctx.hooks.on_call_end(ctx, request, error)
            raise error from exc
        except Exception as exc:
            if ctx is not None:
                await ctx.hooks.on_call_end(ctx, request, exc)
            raise
        if ctx is not None:
            ctx.meter.add(completion.usage)  # counted before its reservation is released
            await ctx.hooks.on_call_end(ctx, request, completion)
        return completion

    async def _attempt(self, request: CompletionRequest, number: int) -> Completion:
        self.attempts += 1
        started = time.perf_counter()
        try:
            async with self._limiter:
                waited = time.perf_counter() - started
                if self._breaker is not None:
                    self._breaker.check()  # after queueing: the endpoint may have died meanwhile
                tokens, usd = self._reserve(request)
                try:
                    completion = await self._hooked(request, number)
                finally:
                    self._release(tokens, usd)
        except Exception as exc:
            if self._breaker is not None:
                self._breaker.record(exc)
            final = self._within_patience(exc)
            last = number >= self._policy.max_attempts or not is_transient(final)
            log_event(
                logger,
                logging.WARNING,
                "sub_agent.call",
                **self._tags,
                attempt=number,
                status="failed" if last else "retrying",
                error=scrub(f"{type(exc).__name__}: {exc}"),
                latency_s=round(time.perf_counter() - started, 4),
            )
            if final is not exc:
                raise final from exc
            raise
        if self._breaker is not None:
            self._breaker.record(None)
        completion = completion.model_copy(update={"queue_s": completion.queue_s + waited})
        log_event(
            logger,
            logging.INFO,
            "sub_agent.call",
            **self._tags,
            attempt=number,
            status="ok",
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_s=round(completion.latency_s, 4),
            queue_s=round(completion.queue_s, 4),
        )
        return completion
