"""The mdqa suite: one NQ-open question over k Wikipedia passages, its gold one at a chosen position.

Lost in the Middle's multi-document QA. The paper's 10/20/30-passage files are built from a
retriever's results; here the k-1 distractors come from the other gold passages of the same item
range, ranked by BM25 against the question, skipping any that holds one of the question's answers:
passages that share the question's words but cannot answer it, as retrieved ones would. N is k, the
passages per question; each group is one question. Answers are scored by best-subspan match.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from fanout.agents.errors import UserError
from fanout.orchestrator._bm25 import bm25s as import_bm25s

from .answers import holds_answer
from .filler import Position
from .group import Document, Group, Question
from .litm import DEV_NQ_ITEMS, ItemRange, LitmSuite, gold_index, read_items

__all__ = ["MultiDocQASuite", "Passage", "QAItem", "load_mdqa"]


class Passage(BaseModel):
    """A Wikipedia passage as Lost in the Middle gives it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    title: str = ""
    """The article's title."""
    text: str
    """The passage."""

    def document(self, id: str) -> Document:
        """The passage as a document, its title first (as the paper's prompt shows it)."""
        return Document(id=id, text=f"(Title: {self.title}) {self.text}".strip())


class QAItem(BaseModel):
    """One line of the oracle file: a question, its answers and its gold passage."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    question: str
    """The NQ-open question."""
    answers: list[str]
    """Accepted answers."""
    ctxs: list[Passage]
    """The gold passage first (the oracle file holds only it)."""

    @model_validator(mode="after")
    def _answerable(self) -> QAItem:
        if not self.answers or not self.ctxs:
            raise ValueError("needs answers and a gold passage in 'ctxs'")
        return self


@dataclass(frozen=True, kw_only=True)
class MultiDocQASuite(LitmSuite[QAItem]):
    """Groups of one question over N passages: its gold one at `position`, N-1 BM25 distractors."""

    name: str = "mdqa"
    """Suite name in reports."""
    _index: list[Any] = field(default_factory=list, init=False, repr=False, compare=False)

    def check(self, n: int, groups: int) -> None:
        """N passages need N-1 distractors from the other items of the range."""
        if n > len(self.items):
            raise UserError(
                f"N={n} passages need {n - 1} distractors, but items {self.item_range} of "
                f"{self.source_file} hold {len(self.items)} passages"
            )

    def _retriever(self) -> Any:
        if not self._index:
            corpus = [p.title + " " + p.text for p in self._passages()]
            bm25s = import_bm25s()
            retriever = bm25s.BM25()
            retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False),
                            show_progress=False)  # fmt: skip
            self._index.append(retriever)
        return self._index[0]

    def _passages(self) -> list[Passage]:
        return [item.ctxs[0] for _, item in self.items]

    def distractors(self, at: int, k: int) -> list[int]:
        """The k items whose passages rank best for item `at`'s question, best first.

        A passage holding one of the question's answers is skipped.
        """
        _, item = self.items[at]
        passages = self._passages()
        gold_text = passages[at].text
        query = import_bm25s().tokenize(item.question, stopwords="en", show_progress=False)
        ranked, _ = self._retriever().retrieve(query, k=len(passages), show_progress=False)
        picked: list[int] = []
        for j in (int(x) for x in ranked[0]):
            passage = passages[j]
            if j == at or passage.text == gold_text:
                continue
            if holds_answer(f"{passage.title} {passage.text}", item.answers):
                continue
            picked.append(j)
            if len(picked) == k:
                break
        return picked

    def group(self, n: int, index: int, *, seed: int) -> Group:
        """Question number `index` of the seeded order, over N passages."""
        self.check(n, index + 1)
        order = list(range(len(self.items)))
        random.Random(f"{self.name}/{seed}").shuffle(order)
        at = order[index % len(order)]
        number, item = self.items[at]
        rng = random.Random(f"{self.name}/{seed}/{n}/{index}")
        # Distractors keep their BM25 order (best first), as a retriever would list them.
        picks = self.distractors(at, n - 1)
        picks.insert(gold_index(self.position, n, rng), at)
        documents = tuple(self.items[j][1].ctxs[0].document(f"p{self.items[j][0]}") for j in picks)
        question = item.question.strip()
        if not question.endswith("?"):
            question += "?"
        gold = f"p{number}"
        return Group(
            id=f"{self.name}-n{n}-g{index}-s{seed}",
            documents=documents,
            questions=(
                Question(
                    id=f"nq{number}",
                    text=question,
                    answers=tuple(item.answers),
                    match="subspan",
                    document_ids=(gold,),
                ),
            ),
            metadata={
                "item": str(number),
                "gold_position": str(picks.index(at)),
                "position": self.position,
            },
        )


def load_mdqa(
    path: str | Path, *, items: ItemRange | None = None, position: Position = "middle"
) -> MultiDocQASuite:
    """Read the items of `items` (default: the development range) from an NQ-open oracle file."""
    item_range = items or DEV_NQ_ITEMS
    return MultiDocQASuite(
        items=read_items(Path(path), QAItem, item_range),
        source_file=str(path),
        item_range=item_range,
        position=position,
    )
