"""What a user asks fanout to do: documents, and a question and/or instructions over them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from fanout.agents.errors import UserError

__all__ = ["Document", "Request"]


class Document(BaseModel):
    """One input document; its id is what answers cite."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Stable, unique, non-empty name (a file name, a URL); cited in answers and used to key
    results. Any characters are allowed: models never see ids, only aliases ("[1]")."""
    text: str
    """The full text; long texts are chunked, never truncated."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Anything the caller wants carried along (source path, date)."""

    @field_validator("id")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value:
            raise UserError("a document id is empty")
        return value


class Request(BaseModel):
    """Documents x tasks.

    Four shapes: N documents x one question; one text x K instructions; N documents x K
    instructions; N (document, instruction) pairs (`Request.pairs`). With both a question and
    instructions, the instructions are the per-document tasks and the question is what the
    synthesizer answers from their findings.
    """

    model_config = ConfigDict(frozen=True)

    documents: Annotated[Sequence[Document], AfterValidator(tuple)]
    """The inputs (any sequence, kept as a tuple); at least one, ids unique."""
    question: str | None = None
    """The question to answer over the documents."""
    instructions: Annotated[Sequence[str], AfterValidator(tuple)] = ()
    """Independent tasks to run on every document (any sequence of strings, kept as a tuple)."""
    paired: bool = False
    """Document i goes with instruction i only (built by `Request.pairs`): "summarise each
    contract", "classify each ticket", where which document a task needs is known."""

    @model_validator(mode="after")
    def _check(self) -> Request:
        if not self.documents:
            raise UserError("a request needs at least one document")
        seen: set[str] = set()
        for doc in self.documents:
            if doc.id in seen:
                raise UserError(f"duplicate document id: {doc.id}")
            seen.add(doc.id)
        if self.question is not None and not self.question.strip():
            raise UserError("the question is empty")
        if any(not i.strip() for i in self.instructions):
            raise UserError("an instruction is empty")
        if self.question is None and not self.instructions:
            raise UserError("a request needs a question or at least one instruction")
        if self.paired:
            if len(self.instructions) != len(self.documents):
                raise UserError(
                    f"a paired request needs one instruction per document: "
                    f"{len(self.documents)} documents, {len(self.instructions)} instructions"
                )
            if self.question is not None:
                raise UserError("a paired request has no question: each document has its task")
        return self

    @classmethod
    def from_text(cls, text: str, instructions: Sequence[str], *, id: str = "input") -> Request:
        """One text x several instructions (multi-task inference on the same input)."""
        return cls(documents=(Document(id=id, text=text),), instructions=instructions)

    @classmethod
    def pairs(cls, pairs: Iterable[tuple[Document, str]]) -> Request:
        """Document i with task i only, when the pairing is known ("classify each ticket")."""
        items = list(pairs)
        return cls(
            documents=tuple(d for d, _ in items),
            instructions=tuple(t for _, t in items),
            paired=True,
        )

    @property
    def tasks(self) -> list[str]:
        """The per-document tasks: the instructions, or else the question."""
        if self.instructions:
            return list(self.instructions)
        assert self.question is not None
        return [self.question]
