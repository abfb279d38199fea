"""The keyvalue suite: one code hidden in each document's filler, one question per document.

N documents look alike (same filler, same kind of fact, different keys), so a single prompt holding
all of them must pick the right document for each question: the lost-in-the-middle setting, with N,
the document length and the fact's depth under control.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fanout.agents.errors import UserError

from .filler import Position, embed_fact
from .group import Document, Group, Question

__all__ = ["KEYS", "KeyValueSuite", "key_value_facts"]

_ADJECTIVES = (
    "amber", "azure", "bronze", "cobalt", "copper", "coral", "crimson", "emerald", "golden",
    "indigo", "ivory", "jade", "lilac", "maroon", "olive", "orange", "pearl", "ruby", "saffron",
    "scarlet", "silver", "teal", "violet", "white",
)  # fmt: skip
_NOUNS = (
    "archive", "cabinet", "cellar", "chest", "depot", "gate", "hangar", "locker", "safe",
    "shed", "storeroom", "vault",
)  # fmt: skip
KEYS: tuple[str, ...] = tuple(f"{a} {n}" for a in _ADJECTIVES for n in _NOUNS)
"""Every key the generator can use; a group never repeats one."""


def key_value_facts(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """`n` distinct (key, four-digit code) pairs."""
    if n > len(KEYS):
        raise UserError(f"keyvalue makes at most {len(KEYS)} instances per group, not {n}")
    keys = rng.sample(KEYS, n)
    codes = rng.sample(range(1000, 10000), n)
    return [(key, str(code)) for key, code in zip(keys, codes, strict=True)]


@dataclass(frozen=True, kw_only=True)
class KeyValueSuite:
    """N documents of filler, each hiding "The access code for the <key> is <code>."."""

    doc_tokens: int = 120
    """Approximate length of each document."""
    position: Position = "random"
    """Where the fact sits in its document."""
    name: str = "keyvalue"
    """Suite name in reports."""

    @property
    def source(self) -> str:
        """The generator's settings."""
        return f"synthetic (doc_tokens={self.doc_tokens}, position={self.position})"

    def check(self, n: int, groups: int) -> None:
        """N is bounded by the number of distinct keys."""
        if n > len(KEYS):
            raise UserError(f"keyvalue makes at most {len(KEYS)} instances per group, not {n}")

    def group(self, n: int, index: int, *, seed: int) -> Group:
        """N documents, N questions; question i asks about document i."""
        rng = random.Random(f"{self.name}/{seed}/{n}/{index}")
        documents: list[Document] = []
        questions: list[Question] = []
        for i, (key, code) in enumerate(key_value_facts(rng, n), 1):
            fact = f"The access code for the {key} is {code}."
            doc = Document(
                id=f"doc-{i}", text=embed_fact(rng, fact, self.doc_tokens, self.position)
            )
            documents.append(doc)
            questions.append(
                Question(
                    id=f"q{i}",
                    text=f"What is the access code for the {key}?",
                    answers=(code,),
                    document_ids=(doc.id,),
                )
            )
        return Group(
            id=f"{self.name}-n{n}-g{index}-s{seed}",
            documents=tuple(documents),
            questions=tuple(questions),
            metadata={"doc_tokens": str(self.doc_tokens), "position": self.position},
        )
