"""OpenTelemetry spans for a run, when ``opentelemetry-api`` is installed: run -> sub-agent -> call.

Each span carries what an operator looks for: ids, status, attempts and tokens (under the GenAI
semantic-convention names ``gen_ai.usage.input_tokens`` / ``output_tokens``). Without the package
every helper here does nothing; with it but no SDK configured, the API's no-op tracer does the same.
Spans are handed ids and numbers only, never a prompt, a document or a question: no text of a
request reaches a telemetry exporter. Spans nest through context variables;
``call_soon_threadsafe`` copies the caller's context, so they survive the hop onto fanout's portal
event loop (tested).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fanout.agents.backend import Completion

from .result import RunResult, SubResult

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["call_span", "run_span", "set_run_result", "traced_sub_agent"]

try:
    from opentelemetry import trace as _trace
except ImportError:  # an optional dependency: tracing is off
    _trace = None  # type: ignore[assignment]


@contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[Span | None]:
    if _trace is None:
        yield None
        return
    clean = {k: v for k, v in attributes.items() if v is not None}
    with _trace.get_tracer("fanout").start_as_current_span(name, attributes=clean) as span:
        yield span


def _set(span: Span | None, attributes: dict[str, Any]) -> None:
    if span is not None:
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def _fail(span: Span | None, error: str) -> None:
    if span is not None and _trace is not None:
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, error))


def run_span(run_id: str, strategy: str) -> Any:
    """The span of one coordinator run (a context manager yielding the span, or None)."""
    return _span("fanout.run", {"fanout.run_id": run_id, "fanout.strategy": strategy})


def set_run_result(span: Span | None, result: RunResult) -> None:
    """Totals of a finished run on its span."""
    _set(
        span,
        {
            "fanout.sub_agents": len(result.sub_results),
            "fanout.failed": len(result.failed),
            "fanout.calls": result.usage.calls,
            "gen_ai.usage.input_tokens": result.usage.prompt_tokens,
            "gen_ai.usage.output_tokens": result.usage.completion_tokens,
        },
    )
    if result.failed:
        _fail(span, f"{len(result.failed)} sub-agent(s) failed")


async def traced_sub_agent(
    sub_agent_id: str,
    document_id: str | None,
    chunk_index: int,
    run: Callable[[], Awaitable[SubResult]],
) -> SubResult:
    """`run` (one sub-agent) inside its own span, which records how it ended."""
    attributes = {
        "fanout.sub_agent_id": sub_agent_id,
        "fanout.document_id": document_id,
        "fanout.chunk_index": chunk_index,
    }
    with _span("fanout.sub_agent", attributes) as span:
        result = await run()
        _set(
            span,
            {
                "fanout.status": result.status,
                "fanout.outcome": result.outcome,
                "fanout.attempts": result.attempts,
                "gen_ai.usage.input_tokens": result.usage.prompt_tokens,
                "gen_ai.usage.output_tokens": result.usage.completion_tokens,
            },
        )
        if result.status == "failed":
            _fail(span, result.error or "failed")
        return result


async def call_span(
    max_tokens: int, attempt: int, model: str, call: Callable[[], Awaitable[Completion]]
) -> Completion:
    """One call attempt inside its span: tokens when it returns, the error when it raises."""
    attributes = {
        "fanout.attempt": attempt,
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": max_tokens,
    }
    with _span("fanout.call", attributes) as span:
        completion = await call()  # an exception is recorded on the span and sets its status
        _set(
            span,
            {
                "gen_ai.response.model": completion.model,
                "gen_ai.usage.input_tokens": completion.prompt_tokens,
                "gen_ai.usage.output_tokens": completion.completion_tokens,
                "fanout.latency_s": completion.latency_s,
            },
        )
        return completion
