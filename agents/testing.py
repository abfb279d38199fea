"""A deterministic scripted backend for tests: every unit test in fanout uses this one fake.

It answers from a queue of steps, or from a function of the request (so a test can answer per document
id), records every request it received with the exact text a completion model would have seen, and
fails loudly on calls nobody scripted.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

from ._prompts import render_chat, render_completion
from .backend import (
    Closeable,
    Completion,
    CompletionRequest,
    PromptStyle,
    estimate_tokens,
    parse_structured,
)
from .errors import BackendClosed

__all__ = ["ScriptedBackend", "Step", "UnexpectedCall"]

Step: TypeAlias = (
    "str | Completion | BaseException | "
    "Callable[[CompletionRequest], str | Completion | Awaitable[str | Completion]]"
)


class UnexpectedCall(AssertionError):
    """The scripted backend was called more often than scripted."""


class ScriptedBackend(Closeable):
    """Replays scripted steps: a string is the answer, an exception is raised, a callable is called.

    Args:
        steps: consumed one per call, in order.
        fn: used for every call once `steps` is exhausted (or always, when no steps are given).
        name: model name reported in completions.
        prompt_style: which renderer `prompts` records (the backend itself never parses prompts).
        context_window: reported to the coordinator, so tests can force chunking.
        delay_s: awaited before answering, so concurrency is observable.
        record: keep every request in `calls`; off for runs too large to hold them all (the
            scale benchmark), where `calls` stays empty and `n_calls` still counts.
        prefix_cache: report as cached the prompt's leading characters it shares with the
            previous call's (in tokens, at most all but the last), as llama.cpp keeps a prefix.
    """

    def __init__(
        self,
        steps: Iterable[Step] = (),
        *,
        fn: Callable[[CompletionRequest], Any] | None = None,
        name: str = "scripted",
        prompt_style: PromptStyle = "completion",
        context_window: int | None = None,
        delay_s: float = 0.0,
        record: bool = True,
        prefix_cache: bool = False,
    ) -> None:
        self.name = name
        self.prompt_style: PromptStyle = prompt_style
        self.context_window = context_window
        self.delay_s = delay_s
        self.record = record
        self.prefix_cache = prefix_cache
        self._last_prompt = ""
        self._steps: deque[Step] = deque(steps)
        self._fn = fn
        self.calls: list[CompletionRequest] = []
        """Every request received, in arrival order (failed ones included), when recording."""
        self.n_calls = 0
        """Requests received, recorded or not."""
        self.unexpected: list[CompletionRequest] = []
        """Requests that arrived after the script ran out."""
        self.in_flight = 0
        self.max_in_flight = 0
        """Largest number of calls that were running at the same moment."""
        self.closed = False
        """Whether `close`/`aclose` ran (a coordinator closes the backend it was given)."""

    def count_tokens(self, text: str) -> int:
        """Four characters a token: deterministic and independent of any tokenizer."""
        return estimate_tokens(text)

    def render(self, request: CompletionRequest) -> str:
        """The exact text this call's model would read."""
        if self.prompt_style == "chat":
            return "\n".join(f"{m['role']}: {m['content']}" for m in render_chat(request.prompt))
        return render_completion(request.prompt)

    @property
    def prompts(self) -> list[str]:
        """The rendered text of every call received."""
        return [self.render(r) for r in self.calls]

    def calls_for(self, **tags: str) -> list[CompletionRequest]:
        """Calls whose tags include all of `tags` (e.g. ``document_id="a.md"``)."""
        return [r for r in self.calls if all(r.tags.get(k) == v for k, v in tags.items())]

    def assert_consumed(self) -> None:
        """Fail if scripted steps were left over or calls arrived that nobody scripted."""
        if self._steps:
            raise AssertionError(f"{len(self._steps)} scripted step(s) were never used")
        if self.unexpected:
            raise UnexpectedCall(f"{len(self.unexpected)} call(s) arrived after the script ended")

    async def aclose(self) -> None:
        """Record that the backend was closed; later calls fail."""
        self.closed = True

    async def complete(self, request: CompletionRequest) -> Completion:
        """Answer from the script, after `delay_s`."""
        if self.closed:
            raise BackendClosed("the scripted backend is closed")
        self.n_calls += 1
        if self.record:
            self.calls.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            reply = await self._next_reply(request)
        finally:
            self.in_flight -= 1
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Completion):
            return reply
        text = reply.strip()
        data = parse_structured(request, text)
        rendered = self.render(request)
        prompt_tokens = self.count_tokens(rendered)
        cached = 0
        if self.prefix_cache:
            shared = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(self._last_prompt, rendered, strict=False))
                    if a != b
                ),
                min(len(self._last_prompt), len(rendered)),
            )
            cached = min(self.count_tokens(rendered[:shared]), max(prompt_tokens - 1, 0))
            self._last_prompt = rendered
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            cached_prompt_tokens=cached,
            completion_tokens=self.count_tokens(text),
            latency_s=self.delay_s,
            model=self.name,
            data=data,
        )

    async def _next_reply(self, request: CompletionRequest) -> str | Completion | BaseException:
        if self._steps:
            step = self._steps.popleft()
        elif self._fn is not None:
            step = self._fn
        else:
            self.unexpected.append(request)
            return UnexpectedCall(f"unscripted call with tags {dict(request.tags)}")
        if isinstance(step, str | Completion | BaseException):
            return step
        result = step(request)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, str | Completion | BaseException):
            raise TypeError(f"scripted step returned {type(result).__name__}, not str/Completion")
        return result
