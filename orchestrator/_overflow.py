"""A sub-task the model refused as too long, cut into pieces that fit.

Chunking is planned from the backend's context window; when that is unknown (a server that never
said) or the count disagrees with the server's (estimated tokens), a document can reach a model
whose context it overflows. The model's refusal (`ContextOverflow`) is then taken at its word: the
window it states (servers say "maximum context length is 2048"), or else half the sub-task's size,
sets the pieces' size, and the pieces run as sub-agents of their own whose answers merge like any
chunked document's.
"""

from __future__ import annotations

from fanout.agents.backend import Backend
from fanout.agents.errors import ContextOverflow, UserError
from fanout.agents.task import SubTask, cut_id

from .split import chunk_text, task_budget

__all__ = ["MAX_CUTS", "cut_to_fit"]

MAX_CUTS = 3
"""How many times a piece that still overflows is cut again (down to an eighth at least)."""

_MIN_PIECE_TOKENS = 16


def cut_to_fit(
    task: SubTask,
    overflow: ContextOverflow,
    backend: Backend,
    *,
    max_tokens: int,
    overlap_tokens: int,
) -> list[SubTask] | None:
    """The pieces of `task` that should fit the context; None when cutting cannot help.

    Only a sub-task over one document is cut (the monolithic prompt holds every document).
    """
    if task.document_id is None:
        return None
    size = backend.count_tokens(task.context)
    window = backend.context_window or overflow.context_window
    budget: int | None = None
    if window is not None:
        try:
            budget = task_budget(backend, [task.task], max_tokens=max_tokens, window=window)
        except UserError:
            return None  # the prompt and the answer alone fill the window
    if budget is None or budget >= size:
        budget = size // 2  # the model disagrees with our count: take it at its word, halve
    if budget < _MIN_PIECE_TOKENS:
        return None
    chunks = chunk_text(
        task.context,
        max_tokens=budget,
        overlap_tokens=min(overlap_tokens, budget // 4),
        count_tokens=backend.count_tokens,
        token_offsets=getattr(backend, "token_offsets", None),
    )
    if len(chunks) < 2:
        return None
    return [
        SubTask(
            id=cut_id(task.id, index),
            document_id=task.document_id,
            chunk_index=index,
            n_chunks=len(chunks),
            start=task.start + chunk.start,
            end=task.start + chunk.end,
            task_index=task.task_index,
            task=task.task,
            context=chunk.text,
        )
        for index, chunk in enumerate(chunks)
    ]
