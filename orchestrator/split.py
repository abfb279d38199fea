"""The split stage: a request into isolated sub-tasks, long documents cut into overlapping chunks.

`DocumentSplitter` is the default split stage and `TopKSplitter` its pre-filter; the functions
below are what they are made of, for a splitter of your own.

A chunk's budget is what the model's context holds next to the sub-agent's prompt and its answer
(`chunk_budget`).

Chunks are measured with the backend's own token counter and cut at paragraph, sentence or word
boundaries where one is near. Every character of a document lands in at least one chunk, and
consecutive chunks share at most `overlap_tokens` tokens, so nothing is silently dropped.

Each chunk is tokenized about once: its end is guessed from the characters per token measured on
the chunks before it, and the one count that checks the guess also corrects the next guess; a guess
that overshoots is cut back where the tokenizer's offsets say the limit falls. (Searching for each
end with the counter instead tokenized every chunk some thirty times: 22 s per MB of text on the
embedded model.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from fanout.agents._prompts import prompt_text
from fanout.agents.backend import PromptStyle
from fanout.agents.errors import UserError
from fanout.agents.subagent import task_prompt
from fanout.agents.task import SubTask

from ._relevance import relevance_scores
from .context import RunContext
from .request import Request

__all__ = [
    "DEFAULT_OVERLAP_TOKENS",
    "Chunk",
    "CountTokens",
    "DocumentSplitter",
    "SplitProgress",
    "TokenOffsets",
    "Tokenizing",
    "TopKSplitter",
    "chunk_budget",
    "chunk_text",
    "split_monolithic",
    "split_request",
    "task_budget",
]

CountTokens = Callable[[str], int]
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
# A guessed end aims this full, so that a good guess rarely overshoots the limit...
_AIM = 0.97
# ...and a guess that fills less than this is grown (the text packs more characters per token).
_FILL = 0.7
_GROW_TRIES = 3
# Characters per token assumed before anything is measured (English prose on common tokenizers).
_FIRST_RATIO = 4.0


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """A slice of a document: ``text == document[start:end]``."""

    start: int
    """Offset of the first character."""
    end: int
    """Offset one past the last character."""
    text: str
    """The slice itself."""


def _soft_end(text: str, start: int, end: int) -> int:
    """Move `end` back to a nearby boundary so chunks do not cut words or sentences."""
    floor = start + int((end - start) * (1 - _SOFT_WINDOW))
    for boundary in _BOUNDARIES:
        at = text.rfind(boundary, floor, end)
        if at > start:
            return at + len(boundary)
    return end


class _Cutter:
    """Finds chunk ends and overlap starts in one text, learning its characters per token."""

    def __init__(
        self,
        text: str,
        *,
        max_tokens: int,
        overlap_tokens: int,
        count: CountTokens,
        offsets: TokenOffsets | None,
    ) -> None:
        self.text = text
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.count = count
        self.offsets = offsets
        self.ratio = _FIRST_RATIO

    def _measure(self, start: int, end: int) -> int:
        n = self.count(self.text[start:end])
        if n > 0:
            self.ratio = (end - start) / n
        return n

    def _guess(self, start: int, tokens: float, floor: int) -> int:
        guess = start + max(1, int(tokens * self.ratio))
        end = len(self.text) if guess >= len(self.text) else _soft_end(self.text, start, guess)
        return max(end, floor)

    def end(self, start: int, floor: int) -> int:
        """Where the chunk from `start` ends: as far as the limit allows, at a boundary.

        It ends at `floor` or later (progress), even if that one chunk must exceed the limit.
        """
        end = self._guess(start, self.max_tokens * _AIM, floor)
        n = self._measure(start, end)
        for _ in range(_GROW_TRIES):
            if n > self.max_tokens or end >= len(self.text) or n >= self.max_tokens * _FILL:
                break
            grown = self._guess(start, self.max_tokens * _AIM, floor)
            if grown <= end:
                break
            end, n = grown, self._measure(start, grown)
        while n > self.max_tokens and end - start > 1 and end > floor:
            end = self._cut_back(start, end, n, floor)
            n = self._measure(start, end)
        return end

    def _cut_back(self, start: int, end: int, n: int, floor: int) -> int:
        """A smaller end for an over-full chunk: where the offsets put the limit, else in proportion."""
        back = start + (end - start) * self.max_tokens // n
        if self.offsets is not None:
            offsets = self.offsets(self.text[start:end])
            if len(offsets) > self.max_tokens:
                back = start + offsets[self.max_tokens]
        back = _soft_end(self.text, start, back) if start < back < end else back
        return max(start + 1, floor, min(back, end - 1))

    def next_start(self, start: int, end: int) -> int:
        """Where the chunk after [start, end) starts: at most `overlap_tokens` back, at a word."""
        if self.overlap_tokens <= 0:
            return end
        at = max(start + 1, end - int(self.overlap_tokens * self.ratio))
        space = self.text.find(" ", at, end)
        at = space + 1 if space != -1 else at
        n = self.count(self.text[at:end])
        while n > self.overlap_tokens:  # the guess overshot: move forward in proportion
            at = min(end, at + max(1, (end - at) * (n - self.overlap_tokens) // n))
            n = self.count(self.text[at:end])
        return at


def chunk_text(
    text: str,
    *,
    max_tokens: int,
    overlap_tokens: int,
    count_tokens: CountTokens,
    token_offsets: TokenOffsets | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Chunk]:
    """Cut `text` into chunks of at most `max_tokens` tokens overlapping by at most `overlap_tokens`.

    Args:
        text: the document.
        max_tokens: the most tokens a chunk may count.
        overlap_tokens: the most tokens consecutive chunks may share.
        count_tokens: the backend's counter; every chunk is checked with it.
        token_offsets: the backend's tokenizer as token start offsets: where an over-full guess is
            cut back to (without it, in proportion to the count).
        progress: called with the characters chunked so far after each chunk.
    """
    if max_tokens < 1:
        raise UserError(f"chunk size must be at least 1 token, not {max_tokens}")
    if overlap_tokens < 0 or overlap_tokens * 2 > max_tokens:
        raise UserError(
            f"chunk overlap ({overlap_tokens} tokens) must be between 0 and half the chunk size "
            f"({max_tokens} tokens)"
        )
    if not text:
        return [Chunk(start=0, end=0, text=text)]
    cutter = _Cutter(
        text,
        max_tokens=max_tokens,
        overlap_tokens=overlap_tokens,
        count=count_tokens,
        offsets=token_offsets,
    )
    chunks: list[Chunk] = []
    start = 0
    while True:
        end = cutter.end(start, floor=chunks[-1].end + 1 if chunks else start + 1)
        chunks.append(Chunk(start=start, end=end, text=text[start:end]))
        if progress is not None:
            progress(end)
        if end >= len(text):
            return chunks
        start = max(cutter.next_start(start, end), start + 1)


def split_request(
    request: Request,
    *,
    chunk_tokens: int | None = None,
    overlap_tokens: int = 0,
    count_tokens: CountTokens | None = None,
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
    """The baseline: one sub-task whose context holds every document and whose task holds every task.

    Each document is shown under its alias ("[1]", in request order), never its id: ids are opaque
    (`fanout.orchestrator._aliases`), and the answer's citations are mapped back from the aliases.
    """
    context = "\n\n".join(
        f"[{i}]\n{doc.text.strip()}" for i, doc in enumerate(request.documents, 1)
    )
    if request.paired:
        numbered = "\n".join(f"{i}. [{i}] {t}" for i, t in enumerate(request.instructions, 1))
        task = f"Do each of the following, each on the document numbered in brackets:\n{numbered}"
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


# Tokens kept free beyond the measured prompt overhead and completion budget (template drift).
_CONTEXT_MARGIN = 32


class Tokenizing(Protocol):
    """What the budget reads of a model: its context, its tokenizer and its prompt style."""

    @property
    def context_window(self) -> int | None:
        """Tokens the model attends to, or None when unknown."""
        ...

    @property
    def prompt_style(self) -> PromptStyle:
        """Completion or chat."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes."""
        ...


def chunk_budget(backend: Tokenizing, request: Request, *, max_tokens: int) -> int | None:
    """Largest chunk that fits the context next to the prompt and the completion budget.

    None when the backend's context is unknown (then documents are not cut).

    Raises:
        UserError: the context cannot hold the prompt and the answer with any document at all.
    """
    window = backend.context_window
    if window is None:
        return None
    return task_budget(backend, request.tasks, max_tokens=max_tokens, window=window)


def task_budget(backend: Tokenizing, tasks: Sequence[str], *, max_tokens: int, window: int) -> int:
    """Largest chunk that fits a `window`-token context next to any of `tasks`' prompts.

    Raises:
        UserError: the context cannot hold the prompt and the answer with any document at all.
    """
    overhead = max(
        backend.count_tokens(
            prompt_text(
                # a one-character document: a prompt may show the task on both sides of it
                task_prompt(
                    SubTask(id="probe", document_id="probe", task=t, context="."),
                    style=backend.prompt_style,
                ),
                backend.prompt_style,
            )
        )
        for t in tasks
    )
    budget = window - overhead - max_tokens - _CONTEXT_MARGIN
    if budget < 16:
        raise UserError(
            f"the model's context ({window} tokens) leaves no room for a document next to the "
            f"prompt ({overhead} tokens) and the answer ({max_tokens} tokens)"
        )
    return budget


@dataclass(frozen=True, kw_only=True)
class DocumentSplitter:
    """The default splitter: one sub-task per document x task, long documents cut into chunks.

    Chunks are measured with the model's own tokenizer (``ctx.model.count_tokens``) so each fits
    the context next to the prompt and the answer.
    """

    chunk_tokens: int | None = None
    """Largest chunk per sub-agent; None fits the model's context."""
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
    """Tokens shared by consecutive chunks of a document."""

    def __call__(self, ctx: RunContext[Any]) -> list[SubTask]:
        """Split ``ctx.request``."""
        return self.split(ctx)

    def split(self, ctx: RunContext[Any], progress: SplitProgress | None = None) -> list[SubTask]:
        """Split ``ctx.request``, telling `progress` (characters done, in all) as it goes."""
        request, model = ctx.request, ctx.model
        overlap, budget = self.overlap_tokens, self.chunk_tokens
        if budget is None:
            budget = chunk_budget(model, request, max_tokens=model.max_tokens)
            # a small context would leave no room for the default overlap: shrink it instead
            overlap = overlap if budget is None else min(overlap, budget // 4)
        return split_request(
            request,
            chunk_tokens=budget,
            overlap_tokens=overlap,
            count_tokens=model.count_tokens,
            token_offsets=getattr(model, "token_offsets", None),
            progress=progress,
        )


@dataclass(frozen=True, kw_only=True)
class TopKSplitter:
    """Ask only the `k` sub-tasks most relevant to the question: a pre-filter before the fan-out.

    Every sub-task of the wrapped splitter (a chunk of a document) is scored against the question
    with BM25 (IDF over this request's chunks alone, as the ranker does) and the best `k` are kept;
    the documents left out are never asked, and `RunResult.unasked` names them. BM25 sees words,
    not meaning: a gold document worded apart from its question is lost here, which no later stage
    can undo (the eval reports the share of questions whose gold document survives). Requests with
    per-document instructions or known pairs are not filtered: every document must answer them.
    """

    k: int = 5
    """Sub-tasks (chunks) kept per request."""
    of: DocumentSplitter = field(default_factory=DocumentSplitter)
    """The splitter whose sub-tasks are filtered."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UserError(f"must be at least 1, not {self.k}", parameter="k")

    def __call__(self, ctx: RunContext[Any]) -> list[SubTask]:
        """The `k` best sub-tasks of ``ctx.request``, in request order."""
        return self.split(ctx)

    def split(self, ctx: RunContext[Any], progress: SplitProgress | None = None) -> list[SubTask]:
        """Split, then keep the `k` sub-tasks whose context best matches the question."""
        tasks = self.of.split(ctx, progress)
        request = ctx.request
        if request.question is None or request.instructions or request.paired:
            return tasks
        if len(tasks) <= self.k:
            return tasks
        scores = relevance_scores(request.question, [t.context for t in tasks])
        best = sorted(range(len(tasks)), key=lambda i: (-scores[i], i))[: self.k]
        return [tasks[i] for i in sorted(best)]
