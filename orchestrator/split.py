"""Turning a request into isolated sub-tasks, and cutting long documents into overlapping chunks.

Chunks are measured with the backend's own token counter and cut at paragraph, sentence or word
boundaries where one is near. Every character of a document lands in at least one chunk, and
consecutive chunks share at most `overlap_tokens` tokens, so nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fanout.agents.errors import UserError

from .request import Request
from .task import SubTask

__all__ = ["Chunk", "chunk_text", "split_monolithic", "split_request"]

TokenCounter = Callable[[str], int]

# Where to prefer cutting, best first; searched only in the last part of a full window.
_BOUNDARIES = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")
_SOFT_WINDOW = 0.3
# Upper bound on characters per token when searching for a window's end (keeps counting cheap).
_MAX_CHARS_PER_TOKEN = 16


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """A slice of a document: ``text == document[start:end]``."""

    start: int
    """Offset of the first character."""
    end: int
    """Offset one past the last character."""
    text: str
    """The slice itself."""


def _largest_fit(text: str, start: int, max_tokens: int, count: TokenCounter) -> int:
    """The largest end such that text[start:end] has at most max_tokens tokens (at least start+1)."""
    hi = min(len(text), start + max_tokens * _MAX_CHARS_PER_TOKEN)
    if count(text[start:hi]) <= max_tokens:
        return hi
    lo = start + 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[start:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _soft_end(text: str, start: int, end: int) -> int:
    """Move `end` back to a nearby boundary so chunks do not cut words or sentences."""
    floor = start + int((end - start) * (1 - _SOFT_WINDOW))
    for boundary in _BOUNDARIES:
        at = text.rfind(boundary, floor, end)
        if at > start:
            return at + len(boundary)
    return end


def _overlap_start(
    text: str, start: int, end: int, overlap_tokens: int, count: TokenCounter
) -> int:
    """Where the next chunk starts: `overlap_tokens` back from `end`, snapped to a word start."""
    if overlap_tokens <= 0:
        return end
    lo, hi = start + 1, end
    while lo < hi:  # smallest s with count(text[s:end]) <= overlap_tokens
        mid = (lo + hi) // 2
        if count(text[mid:end]) <= overlap_tokens:
            hi = mid
        else:
            lo = mid + 1
    space = text.find(" ", lo, end)
    return space + 1 if space != -1 else lo


def chunk_text(
    text: str, *, max_tokens: int, overlap_tokens: int, count_tokens: TokenCounter
) -> list[Chunk]:
    """Cut `text` into chunks of at most `max_tokens` tokens overlapping by at most `overlap_tokens`."""
    if max_tokens < 1:
        raise UserError(f"chunk size must be at least 1 token, not {max_tokens}")
    if overlap_tokens < 0 or overlap_tokens * 2 > max_tokens:
        raise UserError(f"chunk overlap must be between 0 and half the chunk size ({max_tokens})")
    if not text or count_tokens(text) <= max_tokens:
        return [Chunk(start=0, end=len(text), text=text)]
    chunks: list[Chunk] = []
    start = 0
    while True:
        end = _largest_fit(text, start, max_tokens, count_tokens)
        if end < len(text):
            end = _soft_end(text, start, end)
        if chunks:
            end = max(end, chunks[-1].end + 1)  # always make progress
        chunks.append(Chunk(start=start, end=end, text=text[start:end]))
        if end >= len(text):
            return chunks
        start = max(_overlap_start(text, start, end, overlap_tokens, count_tokens), start + 1)


def split_request(
    request: Request,
    *,
    chunk_tokens: int | None = None,
    overlap_tokens: int = 0,
    count_tokens: TokenCounter | None = None,
) -> list[SubTask]:
    """One sub-task per (document, task, chunk), in request order.

    Args:
        request: the documents and tasks.
        chunk_tokens: largest context a sub-agent may get; None never chunks.
        overlap_tokens: tokens shared by consecutive chunks of a document.
        count_tokens: the backend's token counter (needed when chunking).
    """
    tasks: list[SubTask] = []
    for doc_index, doc in enumerate(request.documents):
        if chunk_tokens is None:
            chunks = [Chunk(start=0, end=len(doc.text), text=doc.text)]
        else:
            if count_tokens is None:
                raise ValueError("chunking needs a token counter")
            chunks = chunk_text(
                doc.text,
                max_tokens=chunk_tokens,
                overlap_tokens=overlap_tokens,
                count_tokens=count_tokens,
            )
        for task_index, task in enumerate(request.tasks):
            if request.paired and task_index != doc_index:
                continue  # a known pairing: document i gets task i only
            for chunk_index, chunk in enumerate(chunks):
                tasks.append(
                    SubTask(
                        id=f"{doc.id}#t{task_index}c{chunk_index}",
                        document_id=doc.id,
                        chunk_index=chunk_index,
                        n_chunks=len(chunks),
                        start=chunk.start,
                        end=chunk.end,
                        task_index=task_index,
                        task=task,
                        context=chunk.text,
                    )
                )
    return tasks


def split_monolithic(request: Request) -> list[SubTask]:
    """The baseline: one sub-task whose context holds every document and whose task holds every task."""
    context = "\n\n".join(f"[{doc.id}]\n{doc.text.strip()}" for doc in request.documents)
    if request.paired:
        numbered = "\n".join(
            f"{i}. [{doc.id}] {t}"
            for i, (doc, t) in enumerate(
                zip(request.documents, request.instructions, strict=True), 1
            )
        )
        task = f"Do each of the following, each on the document named in brackets:\n{numbered}"
    elif request.instructions:
        numbered = "\n".join(f"{i}. {t}" for i, t in enumerate(request.instructions, 1))
        task = f"Do each of the following for every document:\n{numbered}"
        if request.question:
            task = f"{task}\nThen answer: {request.question}"
    else:
        assert request.question is not None
        task = request.question
    return [
        SubTask(id="monolithic", document_id=None, task=task, context=context, end=len(context))
    ]
