"""Your own data as JSONL: one instance a line, so any QA set can be swept.

A line is one question over its documents::

    {"id": "q1", "question": "Who founded Acme?", "answers": ["Ada Lane"],
     "documents": [{"id": "acme.md", "text": "..."}], "match": "subspan"}

``answer`` (one string) may replace ``answers``; ``context`` or ``document`` (one string) may
replace ``documents``. A multi-part instance lists ``questions`` (each with ``question`` and
``answers``) over shared documents; with ``"chained": true`` each part follows the previous one,
and conditional accuracy is reported. ``match`` is ``subspan`` (a gold answer occurs in the
output, the default) or ``exact``. Unknown keys are ignored; a bad line is an error naming its
line number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fanout.agents.errors import UserError, validation_message

from .dataset import DatasetSuite, read_jsonl
from .group import Document, Group, MatchMode, Question

__all__ = ["load_jsonl"]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    title: str | None = None
    text: str = Field(min_length=1)


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str = Field(min_length=1)
    answers: list[str] = Field(default_factory=list)
    answer: str | None = None
    map_task: str | None = None

    @model_validator(mode="after")
    def _one_answer_at_least(self) -> _Part:
        if self.answer is not None:
            self.answers = [*self.answers, self.answer]
        if not self.answers:
            raise ValueError("needs 'answers' (a list) or 'answer'")
        return self


class _Line(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    question: str | None = None
    answers: list[str] = Field(default_factory=list)
    answer: str | None = None
    questions: list[_Part] = Field(default_factory=list)
    documents: list[_Doc] = Field(default_factory=list)
    context: str | None = None
    document: str | None = None
    match: MatchMode = "subspan"
    chained: bool = False
    map_task: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> _Line:
        if self.question is not None:
            part = _Part(
                question=self.question,
                answers=self.answers,
                answer=self.answer,
                map_task=self.map_task,
            )
            self.questions = [part, *self.questions]
        if not self.questions:
            raise ValueError("needs 'question' (with 'answers') or 'questions'")
        for text in (self.context, self.document):
            if text is not None:
                self.documents = [*self.documents, _Doc(text=text)]
        if not self.documents:
            raise ValueError("needs 'documents' (a list), 'context' or 'document'")
        return self


def _instance(lineno: int, raw: dict[str, Any]) -> Group:
    line = _Line.model_validate(raw)
    base = line.id or f"line{lineno}"
    documents: list[Document] = []
    for k, doc in enumerate(line.documents, 1):
        text = f"(Title: {doc.title}) {doc.text}" if doc.title else doc.text
        documents.append(Document(id=doc.id or f"{base}-d{k}", text=text))
    ids = [d.id for d in documents]
    if len(set(ids)) != len(ids):
        raise UserError("two documents share an id")
    questions = tuple(
        Question(
            id=base if len(line.questions) == 1 else f"{base}.{k}",
            text=part.question,
            answers=tuple(part.answers),
            match=line.match,
            document_ids=tuple(ids),
            map_task=part.map_task,
            after=f"{base}.{k - 1}" if line.chained and k > 1 else None,
        )
        for k, part in enumerate(line.questions, 1)
    )
    return Group(id=base, documents=tuple(documents), questions=questions)


def load_jsonl(path: str | Path, *, name: str = "jsonl") -> DatasetSuite:
    """Load a JSONL dataset (.jsonl or .jsonl.gz) in the format above."""
    path = Path(path)
    instances: list[Group] = []
    seen: set[str] = set()
    for lineno, raw in read_jsonl(path):
        try:
            instance = _instance(lineno, raw)
        except ValidationError as exc:
            raise UserError(f"{path}:{lineno}: {validation_message(exc)}") from None
        except UserError as exc:
            raise UserError(f"{path}:{lineno}: {exc}") from None
        if instance.id in seen:
            raise UserError(f"{path}:{lineno}: duplicate id '{instance.id}'")
        seen.add(instance.id)
        instances.append(instance)
    if not instances:
        raise UserError(f"{path}: no instances in the file")
    return DatasetSuite(name=name, source=str(path), instances=instances)
