"""The mdqa suite: one NQ-open question over k Wikipedia passages, its gold one at a chosen position.

Lost in the Middle's multi-document QA. The paper's 10/20/30-passage files are built from a
retriever's results; here the k-1 distractors come from the other gold passages of the same item
range, ranked by BM25 against the question, skipping any that holds one of the question's answers:
passages that share the question's words but cannot answer it, as retrieved ones would. N is k, the
passages per question; each group is one question. Answers are scored by best-subspan match.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from fanout.agents.errors import UserError, validation_message
from fanout.orchestrator._bm25 import bm25s as import_bm25s

from .answers import holds_answer
from .dataset import read_jsonl
from .filler import Position
from .group import Document, Group, Question
from .litm import DEV_NQ_ITEMS, ItemRange, gold_index

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


@dataclass(frozen=True, kw_only=True)
class MultiDocQASuite:
    """Groups of one question over N passages: its gold one at `position`, N-1 BM25 distractors."""

    items: Sequence[tuple[int, QAItem]]
    """(item number in the file, item) for each item of the range."""
    source_file: str
    """The dataset file."""
    item_range: ItemRange
    """Which items of the file were read."""
    position: Position = "middle"
    """Where the gold passage sits."""
    name: str = "mdqa"
    """Suite name in reports."""
    _index: list[Any] = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def source(self) -> str:
        """The file, the items read and the gold position: a resume must agree on all three."""
        return f"{self.source_file} items {self.item_range}, gold {self.position}"

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
    path = Path(path)
    read: list[tuple[int, QAItem]] = []
    for lineno, raw in read_jsonl(path):
        number = lineno - 1
        if number not in item_range:
            if number >= item_range.end:
                break
            continue
        try:
            item = QAItem.model_validate(raw)
        except ValidationError as exc:
            raise UserError(f"{path}:{lineno}: {validation_message(exc)}") from None
        if not item.answers or not item.ctxs:
            raise UserError(f"{path}:{lineno}: needs answers and a gold passage in 'ctxs'")
        read.append((number, item))
    if not read:
        raise UserError(f"{path}: no items in the range {item_range}")
    return MultiDocQASuite(
        items=read, source_file=str(path), item_range=item_range, position=position
    )
