"""The nq suite: NQ-open questions and Wikipedia passages, in lost-in-the-middle's JSONL format.

Each line holds ``question``, ``answers`` (accepted strings) and ``ctxs`` (passages with ``title``
and ``text``; the oracle file has only the gold one). Answers are scored by normalised best-subspan
match, as in the lost-in-the-middle paper. A 100-question slice of the dev set ships in evals/data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from fanout.agents.errors import UserError, validation_message

from .dataset import DatasetSuite, read_jsonl
from .group import Document, Group, Question
from .litm import DEV_NQ_ITEMS, ItemRange

__all__ = ["DEFAULT_NQ", "load_nq"]

DEFAULT_NQ = Path(__file__).resolve().parent.parent / "data" / "nq-open-oracle-dev100.jsonl.gz"
"""The shipped slice: the first 100 questions of lost-in-the-middle's nq-open-oracle file."""


class _Passage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str = ""
    text: str


class _NQLine(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str
    answers: list[str]
    ctxs: list[_Passage]


def _instance(lineno: int, raw: dict[str, Any], max_passages: int | None) -> Group:
    line = _NQLine.model_validate(raw)
    if not line.answers:
        raise UserError("no answers")
    if not line.ctxs:
        raise UserError("no passages in 'ctxs'")
    question = line.question.strip()
    if not question.endswith("?"):
        question += "?"
    passages = line.ctxs[:max_passages] if max_passages else line.ctxs
    documents = tuple(
        Document(id=f"nq{lineno}-p{k}", text=f"(Title: {p.title}) {p.text}".strip())
        for k, p in enumerate(passages, 1)
    )
    return Group(
        id=f"nq{lineno}",
        documents=documents,
        questions=(
            Question(
                id=f"nq{lineno}",
                text=question,
                answers=tuple(line.answers),
                match="subspan",
                document_ids=tuple(d.id for d in documents),
            ),
        ),
    )


def load_nq(
    path: str | Path | None = None,
    *,
    max_passages: int | None = None,
    items: ItemRange | None = None,
) -> DatasetSuite:
    """Load a lost-in-the-middle NQ file (.jsonl or .jsonl.gz); default: the shipped dev slice.

    Args:
        path: the file; None uses `DEFAULT_NQ`.
        max_passages: keep only the first passages of each question (None keeps all).
        items: which items (lines, from 0) to read; None reads the development range.
    """
    path = Path(path) if path is not None else DEFAULT_NQ
    item_range = items or DEV_NQ_ITEMS
    instances: list[Group] = []
    for lineno, raw in read_jsonl(path):
        if lineno - 1 >= item_range.end:
            break
        if lineno - 1 not in item_range:
            continue
        try:
            instances.append(_instance(lineno, raw, max_passages))
        except ValidationError as exc:
            raise UserError(f"{path}:{lineno}: {validation_message(exc)}") from None
        except UserError as exc:
            raise UserError(f"{path}:{lineno}: {exc}") from None
    if not instances:
        raise UserError(f"{path}: no questions in the items {item_range}")
    # The default range keeps the source as it was, so earlier sweeps still resume.
    source = str(path) if items is None or items == DEV_NQ_ITEMS else f"{path} items {item_range}"
    return DatasetSuite(name="nq", source=source, instances=instances)
