"""Answer normalisation shared by scoring and by the suites that must keep answers out of distractors."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

__all__ = ["holds_answer", "normalize"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze spaces (SQuAD / lost-in-the-middle)."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def holds_answer(text: str, answers: Iterable[str]) -> bool:
    """Whether any answer occurs in `text`, both normalised: the test scoring applies to outputs.

    A substring, as best-subspan scoring matches, so a distractor this rejects could never be
    scored as holding the answer.
    """
    haystack = normalize(text)
    return any(want in haystack for want in map(normalize, answers) if want)
