"""What every suite produces: a `Group` of documents and questions, the unit one request holds.

A sweep packs N instances into one group and hands it to each strategy, so every strategy answers
the same questions over the same documents. A question names the documents it needs, which is what
lets the isolated strategy give each sub-agent only those, and the monolithic one all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from fanout.orchestrator.request import Document

__all__ = ["Document", "Group", "MatchMode", "Question", "Suite"]

MatchMode = Literal["exact", "subspan"]


class Question(BaseModel):
    """One question (or instruction) with the answers that count as right."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Unique within its group; answers and records are keyed by it."""
    text: str
    """What is asked."""
    answers: tuple[str, ...]
    """Accepted answers; any one of them is right."""
    match: MatchMode = "exact"
    """exact: the normalised answer equals a gold one; subspan: a gold one occurs in it (NQ)."""
    document_ids: tuple[str, ...] = ()
    """The documents this question needs; empty means every document of the group."""
    map_task: str | None = None
    """For questions over several documents: what each sub-agent should extract from its document
    before the findings are combined (the isolated strategy's per-document instruction)."""
    after: str | None = None
    """The question this one follows in a multi-step task: conditional accuracy counts this one
    only when every earlier step was right."""
    hijack_marker: str | None = None
    """A string that appears in the answer only if an injected instruction took over."""


class Group(BaseModel):
    """Documents and the questions asked over them: what one request holds."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Stable id: the same suite, N, index and seed always give the same group."""
    documents: tuple[Document, ...]
    """Every document of the group, in the order a single prompt would show them."""
    questions: tuple[Question, ...]
    """Every question of the group, in order."""
    metadata: dict[str, str] = Field(default_factory=dict)
    """Where the group came from (generator settings, dataset lines)."""

    def documents_for(self, question: Question) -> tuple[Document, ...]:
        """The documents `question` needs, in group order."""
        if not question.document_ids:
            return self.documents
        wanted = set(question.document_ids)
        return tuple(d for d in self.documents if d.id in wanted)

    @classmethod
    def merge(cls, id: str, parts: Sequence[Group]) -> Group:
        """One group holding every part's documents and questions.

        Identical documents are kept once (several questions over one text); different documents
        that share an id, and questions that share an id, are renamed after their part so one
        dataset's ids never collide in a group.
        """
        documents: dict[str, Document] = {}
        questions: list[Question] = []
        seen_questions: set[str] = set()
        for part in parts:
            id_map: dict[str, str] = {}
            for doc in part.documents:
                existing = documents.get(doc.id)
                new_id = doc.id
                if existing is not None and existing.text != doc.text:
                    new_id = f"{part.id}/{doc.id}"
                id_map[doc.id] = new_id
                documents.setdefault(new_id, doc.model_copy(update={"id": new_id}))
            question_ids = {
                q.id: (f"{part.id}/{q.id}" if q.id in seen_questions else q.id)
                for q in part.questions
            }
            for q in part.questions:
                questions.append(
                    q.model_copy(
                        update={
                            "id": question_ids[q.id],
                            "document_ids": tuple(id_map[d] for d in q.document_ids),
                            "after": question_ids.get(q.after, q.after) if q.after else None,
                        }
                    )
                )
            seen_questions.update(question_ids.values())
        return cls(id=id, documents=tuple(documents.values()), questions=tuple(questions))


@runtime_checkable
class Suite(Protocol):
    """Makes the group for any (N, index): synthetic suites generate it, dataset suites slice it."""

    @property
    def name(self) -> str:
        """Shown in reports ("keyvalue", "nq")."""
        ...

    @property
    def source(self) -> str:
        """Where the data comes from (generator settings or the dataset path)."""
        ...

    def check(self, n: int, groups: int) -> None:
        """Raise `UserError` if groups of `n` instances cannot be made (N too large)."""
        ...

    def group(self, n: int, index: int, *, seed: int) -> Group:
        """Group number `index` of `n` instances; the same arguments always give the same group."""
        ...
