"""Keeping API keys out of every text fanout writes: error lines, logs, results and checkpoints.

Some servers echo the request's ``Authorization`` header in their error bodies, and an error's text
travels everywhere (stderr, JSON log events, ``SubResult.error``, the checkpoint database). So each
backend registers the key it was configured with, and every error text passes through `scrub`,
which replaces registered keys and any ``Bearer`` token with ``***``.
"""

from __future__ import annotations

import re
import threading

__all__ = ["MIN_SECRET_LENGTH", "register_secret", "scrub"]

MIN_SECRET_LENGTH = 6
"""Shorter values are not registered: scrubbing "x" from every message would garble it, and a key
that short protects nothing (local servers that ignore keys get placeholders like that)."""

_BEARER = re.compile(r"(\bBearer\s+)[^\s\"'\\,;}\]]+", re.IGNORECASE)
_MASK = "***"

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
"""Registered values, longest first (a key that contains another is masked whole)."""


def register_secret(value: str | None) -> None:
    """Mask `value` in every text that `scrub` sees from now on, in this process."""
    global _secrets
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value not in _secrets:
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))


def scrub(text: str) -> str:
    """`text` with every registered secret and every ``Bearer`` token replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return _BEARER.sub(rf"\g<1>{_MASK}", text)
