"""The one backend protocol every model shares, and the typed request/completion it exchanges.

A backend turns one `CompletionRequest` into one `Completion`. Everything above it (fan-out, retries,
timeouts, accounting) is the orchestrator's job, so a new backend is one async method.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ._portal import run_sync
from .errors import OutputInvalid

__all__ = [
    "Backend",
    "Closeable",
    "Completion",
    "CompletionRequest",
    "Example",
    "Prices",
    "Prompt",
    "PromptStyle",
    "Usage",
    "estimate_tokens",
    "parse_structured",
    "release",
    "text_limit",
]

PromptStyle = Literal["completion", "chat"]


class Example(BaseModel):
    """One worked example shown before the real task (few-shot), essential for base models."""

    model_config = ConfigDict(frozen=True)

    context: str
    """The example's document text."""
    task: str
    """The example's question or instruction."""
    answer: str
    """The answer the model should imitate."""


class Prompt(BaseModel):
    """A structured prompt: backends render it as a completion prompt or as chat messages.

    Keeping the parts apart (instead of one string) lets the same sub-agent run on base and chat
    models, and lets tests assert exactly which document and task reached which call.
    """

    model_config = ConfigDict(frozen=True)

    instruction: str
    """What the model is asked to do in general (the system message for chat models)."""
    context: str = ""
    """The material to work on: one document or chunk for a sub-agent, labelled results for synthesis."""
    task: str
    """The question or instruction for this call."""
    examples: tuple[Example, ...] = ()
    """Few-shot examples, rendered before the real task."""
    context_label: str = "Document"
    """How the context is introduced ("Document", "Documents", "Findings")."""
    task_label: str = "Question"
    """How the task is introduced ("Question", "Instruction")."""
    answer_label: str = "Answer"
    """The cue a completion model continues after."""
    task_first: bool = False
    """Show the task before the context as well as after it (Lost in the Middle's query-aware
    contextualization): the calls that share a task then share every token before the context,
    which llama.cpp and API prompt caches evaluate once."""
    closing: str = ""
    """Said last, after the task: what the reply must look like. Small models follow the
    instruction they read last far better than one read before a long document."""


class CompletionRequest(BaseModel):
    """One model call."""

    model_config = ConfigDict(frozen=True)

    prompt: Prompt
    """What to ask."""
    max_tokens: int = 128
    """Completion budget."""
    temperature: float = 0.0
    """Sampling temperature; 0 makes local runs repeatable."""
    json_schema: dict[str, Any] | None = None
    """Constrain/validate the output to this JSON schema (grammar on llama.cpp, response_format on APIs)."""
    tags: Mapping[str, str] = Field(default_factory=dict)
    """Who is calling (run id, sub-agent id, document id): for logs and scripted test backends."""


class Usage(BaseModel):
    """Tokens, calls, time and money spent; adds up with `+`."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    """Tokens read by the model."""
    completion_tokens: int = 0
    """Tokens generated."""
    calls: int = 0
    """Model calls that returned (failed attempts are not counted here)."""
    latency_s: float = 0.0
    """Summed call time, from when the model started on each call to its answer (not wall time:
    calls overlap); waiting before that is `queue_s`."""
    queue_s: float = 0.0
    """Summed time the calls waited to start: for a concurrency slot, and on llama.cpp for the
    model (one context serves one call at a time) or a batch slot."""
    cost_usd: float = 0.0
    """Cost from the backend's price table; 0 for local models."""
    cached_prompt_tokens: int = 0
    """Of `prompt_tokens`, those the model did not evaluate again: a prefix llama.cpp kept from
    an earlier call, or what a provider's prompt cache served (billed at its cached price)."""

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def uncached_prompt_tokens(self) -> int:
        """Prompt tokens the model evaluated (or the provider billed in full)."""
        return self.prompt_tokens - self.cached_prompt_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            calls=self.calls + other.calls,
            latency_s=self.latency_s + other.latency_s,
            queue_s=self.queue_s + other.queue_s,
            cost_usd=self.cost_usd + other.cost_usd,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
        )


class Completion(BaseModel):
    """What one successful model call returned."""

    model_config = ConfigDict(frozen=True)

    text: str
    """The generated text, stripped of surrounding whitespace."""
    prompt_tokens: int
    """Tokens in the prompt as the model counted them."""
    completion_tokens: int
    """Tokens generated."""
    latency_s: float
    """Seconds from when the model started on the call to its complete answer."""
    model: str
    """Model name or path that answered."""
    data: dict[str, Any] | None = None
    """The parsed JSON object when the request carried a schema."""
    cost_usd: float = 0.0
    """Cost of this call from the backend's price table."""
    queue_s: float = 0.0
    """Seconds the call waited before the model started on it (a backend's lock or batch slot;
    the coordinator adds its own concurrency wait); not part of `latency_s`."""
    cached_prompt_tokens: int = 0
    """Of `prompt_tokens`, those not evaluated again: a reused prefix, or a provider's cache hit."""

    @property
    def usage(self) -> Usage:
        """This call as a `Usage` with calls=1."""
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            calls=1,
            latency_s=self.latency_s,
            queue_s=self.queue_s,
            cost_usd=self.cost_usd,
            cached_prompt_tokens=self.cached_prompt_tokens,
        )


@dataclass(frozen=True, kw_only=True)
class Prices:
    """USD per million tokens; zero for local models."""

    input_per_mtok: float = 0.0
    """Price of a million prompt tokens."""
    output_per_mtok: float = 0.0
    """Price of a million completion tokens."""
    cached_input_per_mtok: float | None = None
    """Price of a million prompt tokens served from the provider's prompt cache; None: the full
    input price (no discount known)."""

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        """Cost of one call; `cached_tokens` of the prompt at the cached price."""
        cached_rate = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else (self.cached_input_per_mtok)
        )
        fresh = prompt_tokens - cached_tokens
        return (
            fresh * self.input_per_mtok
            + cached_tokens * cached_rate
            + completion_tokens * self.output_per_mtok
        ) / 1_000_000


def parse_structured(request: CompletionRequest, text: str) -> dict[str, Any] | None:
    """The JSON object a schema-constrained call returned (None for a plain call).

    Raises:
        OutputInvalid: the request carried a schema and the text is not a JSON object.
    """
    if request.json_schema is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputInvalid(f"output is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OutputInvalid(f"output is JSON but not an object: {text[:60]!r}")
    return data


def text_limit(max_tokens: int) -> int:
    """Characters an answer of `max_tokens` tokens may hold: a token is a few characters, not 32.

    A backend refuses a longer answer as `InvalidResponse` (a server that ignored the budget, or
    answers with something else than the model's words).
    """
    return 1024 + 32 * max_tokens


def estimate_tokens(text: str) -> int:
    """Rough token count (4 characters a token) for backends without a local tokenizer."""
    return math.ceil(len(text) / 4)


@runtime_checkable
class Backend(Protocol):
    """A model that completes prompts. One required coroutine; everything else is configuration.

    Attributes:
        name: model name shown in results and logs.
        prompt_style: "completion" for base models (few-shot text), "chat" for instruction models.
        context_window: tokens the model can attend to, or None when unknown (then nothing is chunked
            unless the caller sets a chunk size).
    """

    name: str
    prompt_style: PromptStyle
    context_window: int | None

    def count_tokens(self, text: str) -> int:
        """Tokens `text` occupies for this model (exact when a tokenizer is local)."""
        ...

    async def complete(self, request: CompletionRequest) -> Completion:
        """Run one call. Raise a `BackendError` subclass on failure, never a library's own error."""
        ...


class Closeable:
    """``close()``/``aclose()`` and ``with``/``async with`` for whatever holds resources.

    Not part of the `Backend` protocol (a backend needs one method); the built-in backends, the
    scripted fake and the `Coordinator` have it, and `release` closes anything that has it.
    Closing twice is harmless; a backend call made after closing fails with a `BackendError`.
    """

    async def aclose(self) -> None:
        """Release what this holds: loaded models, connections. Subclasses extend it."""

    def close(self) -> None:
        """`aclose` from synchronous code (on fanout's background loop)."""
        run_sync(self.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def release(backend: object) -> None:
    """Close `backend` if it holds anything (has ``aclose``); a bare `Backend` holds nothing."""
    aclose = getattr(backend, "aclose", None)
    if aclose is not None:
        await aclose()
