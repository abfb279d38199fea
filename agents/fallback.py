"""A backend that falls back to a second one when the first fails (e.g. an API first, local second)."""

from __future__ import annotations

import asyncio

from .backend import Backend, Closeable, Completion, CompletionRequest, PromptStyle, release
from .errors import BackendError, ContextOverflow, OutputInvalid

__all__ = ["FallbackBackend"]


class FallbackBackend(Closeable):
    """Try `primary`; if its call fails, make the same call on `fallback`.

    Failures that the fallback cannot fix either (a prompt too long for the context is checked
    against the primary's window; invalid structured output is the model's answer) are not
    retried on the fallback. The completion's `model` says which one answered. It owns both
    backends: closing it closes them.
    """

    def __init__(self, primary: Backend, fallback: Backend) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name} (fallback {fallback.name})"
        self.prompt_style: PromptStyle = primary.prompt_style
        windows = [w for w in (primary.context_window, fallback.context_window) if w]
        self.context_window = min(windows) if windows else None
        self.fallbacks = 0
        """Calls the fallback answered."""

    async def aclose(self) -> None:
        """Close both backends."""
        await asyncio.gather(release(self.primary), release(self.fallback))

    def count_tokens(self, text: str) -> int:
        """The primary's count."""
        return self.primary.count_tokens(text)

    async def complete(self, request: CompletionRequest) -> Completion:
        """Primary, then fallback on a backend error."""
        try:
            return await self.primary.complete(request)
        except (ContextOverflow, OutputInvalid):
            raise
        except BackendError:
            completion = await self.fallback.complete(request)
            self.fallbacks += 1
            return completion
