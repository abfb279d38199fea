"""Turning a request into isolated sub-tasks, and cutting long documents into overlapping chunks.

Chunks are measured with the backend's own token counter and cut at paragraph, sentence or word
boundaries where one is near. Every character of a document lands in at least one chunk, and
consecutive chunks share at most `overlap_tokens` tokens, so nothing is silently dropped.

A long document is tokenized once, a piece at a time, into token start offsets; chunks are cut by
those offsets and each is then counted once to hold the limit exactly. (Searching for each cut with
the counter instead tokenized every chunk about thirty times: 22 s per MB on the embedded model.)
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fanout.agents.errors import UserError

from .request import Request
from .task import SubTask

__all__ = [
    "DEFAULT_OVERLAP_TOKENS",
    "Chunk",
    "SplitProgress",
    "TokenCounter",
    "TokenOffsets",
    "chunk_text",
    "split_monolithic",
    "split_request",
]

TokenCounter = Callable[[str], int]
"""Tokens a text occupies for the model."""
TokenOffsets = Callable[[str], Sequence[int]]
"""Where each token of a text starts, as ascending character offsets (a backend's tokenizer)."""
SplitProgress = Callable[[int, int], None]
"""Called as splitting advances with (characters split so far, characters in all documents)."""

DEFAULT_OVERLAP_TOKENS = 32
"""Tokens consecutive chunks share by default, so a fact cut in two is whole in one of them."""

# Where to prefer cutting, best first; searched only in the last part of a full window.
_BOUNDARIES = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")
_SOFT_WINDOW = 0.3
# Characters tokenized at a time: llama.cpp's tokenizer slows down on very long inputs, and a
# document is indexed only as far as the chunker has got.
_PIECE_CHARS = 16_384


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """A slice of a document: ``text == document[start:end]``."""

    start: int
    """Offset of the first character."""
    end: int
    """Offset one past the last character."""
    text: str
    """The slice itself."""


def _estimated_offsets(count: TokenCounter) -> TokenOffsets:
    """Offsets spread evenly over a piece, from one count, for backends without a tokenizer."""

    def offsets(piece: str) -> list[int]:
        n = count(piece)
        return [i * len(piece) // n for i in range(n)] if n > 0 else []

    return offsets


class _TokenIndex:
    """Token start offsets of a text, found a piece at a time as the chunker moves forward."""

    def __init__(self, text: str, offsets: TokenOffsets) -> None:
        self.text = text
        self._offsets = offsets
        self._starts = array("q")
        self._covered = 0  # offsets are known for text[:_covered]

    def _extend(self) -> bool:
        text, begin = self.text, self._covered
        if begin >= len(text):
            return False
        end = min(len(text), begin + _PIECE_CHARS)
        if end < len(text):  # cut before a space, where tokenizers start a new token anyway
            space = text.rfind(" ", begin + _PIECE_CHARS // 2, end)
            end = space if space > begin else end
        last = self._starts[-1] if self._starts else -1
        for offset in self._offsets(text[begin:end]):
            if begin + offset > last:  # ascending, whatever the tokenizer reports
                last = begin + offset
                self._starts.append(last)
        self._covered = end
        return True

    def token_at(self, pos: int) -> int:
        """Index of the first token starting at or after character `pos`."""
        while self._covered <= pos and self._extend():
            pass
        return bisect.bisect_left(self._starts, pos)

    def start_of(self, token: int) -> int:
        """Character offset where token number `token` starts (the text's length past the end)."""
        while token >= len(self._starts) and self._extend():
            pass
        return self._starts[token] if 0 <= token < len(self._starts) else len(self.text)


def _soft_end(text: str, start: int, end: int) -> int:
    """Move `end` back to a nearby boundary so chunks do not cut words or sentences."""
    floor = start + int((end - start) * (1 - _SOFT_WINDOW))
    for boundary in _BOUNDARIES:
        at = text.rfind(boundary, floor, end)
        if at > start:
            return at + len(boundary)
    return end


def _fit(
    text: str, start: int, end: int, max_tokens: int, count: TokenCounter, index: _TokenIndex
) -> int:
    """`end`, moved back until text[start:end] counts at most `max_tokens` (or is one character)."""
    n = count(text[start:end])
    while n > max_tokens and end - start > 1:
        back = index.start_of(index.token_at(end) - (n - max_tokens))
        if not start < back < end:  # the offsets were off: scale the span down instead
            back = start + (end - start) * max_tokens // n
        end = max(start + 1, min(back, end - 1))
        n = count(text[start:end])
    return end


def _overlap_start(
    text: str, start: int, end: int, overlap_tokens: int, count: TokenCounter, index: _TokenIndex
) -> int:
    """Where the next chunk starts: `overlap_tokens` back from `end`, snapped to a word start."""
    if overlap_tokens <= 0:
        return end
    at = max(index.start_of(index.token_at(end) - overlap_tokens), start + 1)
    space = text.find(" ", at, end)
    at = space + 1 if space != -1 else at
    n = count(text[at:end])
    while n > overlap_tokens:  # the offsets were off: move forward until the overlap holds
        ahead = index.start_of(index.token_at(at) + (n - overlap_tokens))
        at = min(end, max(ahead, at + 1))
        n = count(text[at:end])
    return at


def chunk_text(
    text: str,
    *,
    max_tokens: int,
    overlap_tokens: int,
    count_tokens: TokenCounter,
    token_offsets: TokenOffsets | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Chunk]:
    """Cut `text` into chunks of at most `max_tokens` tokens overlapping by at most `overlap_tokens`.

    Args:
        text: the document.
        max_tokens: the most tokens a chunk may count.
        overlap_tokens: the most tokens consecutive chunks may share.
        count_tokens: the backend's counter; every chunk is checked with it.
        token_offsets: the backend's tokenizer as token start offsets, to place cuts; without
            one, offsets are spread evenly from one count per piece, and the check corrects them.
        progress: called with the characters chunked so far after each chunk.
    """
    if max_tokens < 1:
        raise UserError(f"chunk size must be at least 1 token, not {max_tokens}")
    if overlap_tokens < 0 or overlap_tokens * 2 > max_tokens:
        raise UserError(
            f"chunk overlap ({overlap_tokens} tokens) must be between 0 and half the chunk size "
            f"({max_tokens} tokens)"
        )
    if not text or (len(text) <= _PIECE_CHARS and count_tokens(text) <= max_tokens):
        return [Chunk(start=0, end=len(text), text=text)]
    index = _TokenIndex(text, token_offsets or _estimated_offsets(count_tokens))
    chunks: list[Chunk] = []
    start = 0
    while True:
        end = index.start_of(index.token_at(start) + max_tokens)
        if end < len(text):
            end = _soft_end(text, start, end)
        end = _fit(text, start, end, max_tokens, count_tokens, index)
        if chunks:
            end = max(end, chunks[-1].end + 1)  # always make progress
        chunks.append(Chunk(start=start, end=end, text=text[start:end]))
        if progress is not None:
            progress(end)
        if end >= len(text):
            return chunks
        start = max(
            _overlap_start(text, start, end, overlap_tokens, count_tokens, index), start + 1
        )


def split_request(
    request: Request,
    *,
    chunk_tokens: int | None = None,
    overlap_tokens: int = 0,
    count_tokens: TokenCounter | None = None,
    token_offsets: TokenOffsets | None = None,
    progress: SplitProgress | None = None,
) -> list[SubTask]:
    """One sub-task per (document, task, chunk), in request order.

    Args:
        request: the documents and tasks.
        chunk_tokens: largest context a sub-agent may get; None never chunks.
        overlap_tokens: tokens shared by consecutive chunks of a document.
        count_tokens: the backend's token counter (needed when chunking).
        token_offsets: the backend's tokenizer as token start offsets, if it has one (faster, and
            chunks come out fuller).
        progress: told the characters split so far, and in all, as documents are chunked.
    """
    total = sum(len(doc.text) for doc in request.documents)
    done = 0
    tasks: list[SubTask] = []

    def chunked(at: int) -> None:
        if progress is not None:
            progress(done + at, total)

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
                token_offsets=token_offsets,
                progress=chunked,
            )
        done += len(doc.text)
        if progress is not None:
            progress(done, total)
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
