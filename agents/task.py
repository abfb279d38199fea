"""One sub-agent's unit of work: a task over one document (or one chunk of it), and nothing else."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["SubTask", "cut_id", "cut_parent"]

_CUT = "~cut"
"""Joins a sub-task's id to the index of a piece it was cut into when its context overflowed."""


def cut_id(parent_id: str, index: int) -> str:
    """The id of piece `index` of sub-task `parent_id`, cut after the model refused it as too long."""
    return f"{parent_id}{_CUT}{index}"


def cut_parent(sub_agent_id: str) -> tuple[str, int] | None:
    """(parent id, piece index) of a cut piece's id; None for any other id."""
    parent, mark, index = sub_agent_id.rpartition(_CUT)
    return (parent, int(index)) if mark and index.isdigit() else None


class SubTask(BaseModel):
    """One unit of isolated work: one task over one document or one chunk of it."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Stable id (document, task, chunk): results are keyed and checkpointed under it."""
    document_id: str | None
    """The document this context comes from; None when the context holds every document."""
    chunk_index: int = 0
    """Which chunk of the document."""
    n_chunks: int = 1
    """How many chunks the document was cut into."""
    start: int = 0
    """Offset of this context's first character in the document."""
    end: int = 0
    """Offset one past its last character."""
    task_index: int = 0
    """Index into the request's task list."""
    task: str
    """The question or instruction."""
    context: str
    """The only material this sub-agent may read."""
