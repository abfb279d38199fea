"""Seeded filler prose for the synthetic suites, and placing a fact at a chosen depth in it.

The filler is bland on purpose: no digits, names or codes that could be mistaken for an answer, so
a wrong answer always comes from another document's fact, never from the padding.
"""

from __future__ import annotations

import random
from typing import Literal

__all__ = ["Position", "embed_fact", "filler"]

Position = Literal["start", "middle", "end", "random"]

_SENTENCES = (
    "The committee met on a grey morning and went through the schedule for the coming weeks.",
    "Most of the discussion was about parking, which has been a problem since the spring.",
    "A new coffee machine was installed on the second floor, to general approval.",
    "The quarterly newsletter will be printed on recycled paper from now on.",
    "Several people asked whether the windows in the east wing could be opened.",
    "The cleaning crew now arrives an hour earlier on weekdays.",
    "Visitors are reminded to sign in at the front desk and wear their badges.",
    "The garden behind the building is being replanted with native shrubs.",
    "A reading group meets in the library on alternate afternoons.",
    "The heating system will be inspected before the weather turns cold.",
    "Staff who cycle to work can use the covered racks near the loading bay.",
    "The cafeteria has added a soup of the day and a vegetarian option.",
    "Lost property is kept in a box behind the reception counter.",
    "The old projector in the main hall has finally been replaced.",
    "Fire drills happen without warning, so please know your nearest exit.",
    "The lifts are serviced on the first weekend of every month.",
    "A suggestion box has been placed next to the noticeboard.",
    "The roof terrace stays closed when the wind is strong.",
    "Printer paper is stored in the cupboard beside the kitchen.",
    "Everyone is asked to keep the corridors free of boxes and bags.",
    "The plants in the lobby are watered by a volunteer rota.",
    "Meeting rooms should be left tidy for the next group.",
    "The wireless network was upgraded and is noticeably faster.",
    "A photographer will visit to take pictures for the website.",
    "The blinds on the south side help keep the afternoon sun out.",
    "Delivery drivers should use the side entrance after lunch.",
    "The annual picnic was moved indoors because of the rain.",
    "New chairs were ordered for the training room.",
    "Please report dripping taps to the facilities team.",
    "The noticeboard is cleared at the end of each month.",
)


def filler(rng: random.Random, tokens: int) -> list[str]:
    """Sentences of filler adding up to about `tokens` tokens (four characters a token)."""
    sentences: list[str] = []
    chars = 0
    while chars < tokens * 4:
        sentence = rng.choice(_SENTENCES)
        sentences.append(sentence)
        chars += len(sentence) + 1
    return sentences


def embed_fact(rng: random.Random, fact: str, tokens: int, position: Position) -> str:
    """A paragraph of about `tokens` tokens with `fact` placed at `position` among the filler."""
    sentences = filler(rng, max(tokens - len(fact) // 4, 0))
    if position == "start":
        at = 0
    elif position == "end":
        at = len(sentences)
    elif position == "middle":
        at = len(sentences) // 2
    else:
        at = rng.randint(0, len(sentences))
    sentences.insert(at, fact)
    return " ".join(sentences)
