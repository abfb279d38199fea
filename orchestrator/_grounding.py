"""Whether a finding's quote really is in its document: a small model's quotes drift.

Measured on the embedded 270M base model: asked about the jade chest in a note about the amber
chest, it quoted "The access code for the jade chest is 5179." The word "jade" is not in that note,
so the quote is not found there and the finding is marked ungrounded.
"""

from __future__ import annotations

import re

__all__ = ["is_grounded", "normalize_text"]

_SPACE = re.compile(r"\s+")
_EDGE = " \t\n\"'“”‘’«»`.,;:"


def normalize_text(text: str) -> str:
    """Case and whitespace folded, so a quote matches across line breaks and capitalisation."""
    return _SPACE.sub(" ", text.replace("’", "'").lower()).strip()


def is_grounded(quote: str | None, document: str) -> bool | None:
    """True when the quote, stripped of surrounding quotes and punctuation, occurs in the document.

    None when there is nothing to check (no quote).
    """
    if quote is None:
        return None
    needle = normalize_text(quote).strip(_EDGE)
    if not needle:
        return None
    return needle in normalize_text(document)
