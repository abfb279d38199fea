"""Token counts for backends whose tokenizer is not in this process.

Counts decide where long documents are cut, so a backend counts with the real tokenizer where one
can be had: the server's own (llama.cpp), tiktoken's encodings for OpenAI's models, or a LangChain
model's own counter. When none can, `TokenCounter` falls back to the 4-characters-a-token estimate
and says so once in the log, so a run never chunks on guesses silently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .backend import estimate_tokens
from .logs import log_event

__all__ = ["Count", "TokenCounter", "TokenizerUnavailable", "tiktoken_count"]

logger = logging.getLogger(__name__)

Count = Callable[[str], int]


class TokenizerUnavailable(Exception):
    """No exact tokenizer for this model; the message says why (it is logged once)."""


class TokenCounter:
    """Counts with an exact tokenizer found on first use, or estimates after one warning.

    Args:
        model: the model's name, for the warning.
        find: returns the exact counter, or raises `TokenizerUnavailable` (any other exception
            counts the same: a tokenizer that cannot load is as good as none).
    """

    def __init__(self, model: str, find: Callable[[], Count]) -> None:
        self.model = model
        self._find = find
        self._exact: Count | None = None
        self._resolved = False
        self._lock = threading.Lock()
        self.fallback_reason: str | None = None
        """Why counts are estimates (None while they are exact, or not yet needed)."""

    @property
    def exact(self) -> bool:
        """Whether counts come from the model's tokenizer (resolves it if not done yet)."""
        return self._counter() is not None

    def __call__(self, text: str) -> int:
        """Tokens in `text`."""
        counter = self._counter()
        if counter is not None:
            try:
                return counter(text)
            except Exception as exc:  # a tokenizer that failed once is not trusted again
                self._give_up(f"{type(exc).__name__}: {exc}")
        return estimate_tokens(text)

    def _counter(self) -> Count | None:
        with self._lock:
            if not self._resolved:
                self._resolved = True
                try:
                    self._exact = self._find()
                except Exception as exc:
                    reason = str(exc) if isinstance(exc, TokenizerUnavailable) else repr(exc)
                    self._warn(reason)
            return self._exact

    def _give_up(self, reason: str) -> None:
        with self._lock:
            if self._exact is not None:
                self._exact = None
                self._warn(reason)

    def _warn(self, reason: str) -> None:
        self.fallback_reason = reason
        log_event(
            logger,
            logging.WARNING,
            "tokens.estimated",
            model=self.model,
            reason=reason[:300],
            hint="token counts (and so chunk sizes) are estimates: 4 characters a token",
        )


def tiktoken_count(model: str) -> Count:
    """The count of tiktoken's encoding for an OpenAI model (o200k_base for names it does not know).

    tiktoken downloads each encoding once from the internet into its cache (``TIKTOKEN_CACHE_DIR``);
    with neither, this raises and the caller estimates.

    Raises:
        TokenizerUnavailable: tiktoken is not installed or its encoding cannot be loaded.
    """
    try:
        import tiktoken
    except ImportError:
        raise TokenizerUnavailable("tiktoken is not installed (pip install tiktoken)") from None
    try:
        try:
            encoding = tiktoken.encoding_for_model(model)
        except KeyError:
            encoding = tiktoken.get_encoding("o200k_base")
    except Exception as exc:
        raise TokenizerUnavailable(
            f"tiktoken could not load its encoding (it is downloaded once, then cached): {exc}"
        ) from None
    return lambda text: len(encoding.encode(text, disallowed_special=()))
