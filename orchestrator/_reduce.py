"""Merging the partial answers of a chunked document into one answer per (document, task).

A chunk that says "not found" adds nothing, and identical partial answers need no merging, so a
model call is made only when chunks really disagree (and only in `llm` mode; `join` never calls).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from itertools import groupby
from typing import Any, Literal

from fanout.agents._secrets import scrub
from fanout.agents.subagent import NOT_FOUND, ModelAccess

from ._citations import clean_model_text
from ._prompts import reduce_prompt
from .result import DocumentAnswer, SubResult

__all__ = ["ReduceMode", "reduce_chunks"]

ReduceMode = Literal["llm", "join"]


def _normalise(text: str) -> str:
    return " ".join(text.lower().strip(" .").split())


def _failed_chunks(group: list[SubResult]) -> str | None:
    failed = [r for r in group if r.status == "failed"]
    if not failed:
        return None
    return "; ".join(f"chunk {r.chunk_index + 1}/{r.n_chunks}: {r.error}" for r in failed)


def _whole(result: SubResult) -> DocumentAnswer:
    """The answer of a document that was not chunked: its one sub-agent's, as it stands."""
    base: dict[str, Any] = {
        "document_id": result.document_id,
        "task_index": result.task_index,
        "task": result.task,
        "sub_agent_ids": (result.sub_agent_id,),
    }
    if result.status == "failed":
        return DocumentAnswer(**base, status="failed", error=_failed_chunks([result]))
    return DocumentAnswer(
        **base,
        status="ok",
        outcome=result.outcome,
        answer=result.output,
        evidence=result.evidence,
        grounded=result.grounded,
        data=result.data,
    )


async def _reduce_group(
    group: list[SubResult], mode: ReduceMode, llm: Callable[[], ModelAccess]
) -> DocumentAnswer:
    first = group[0]
    ids = tuple(r.sub_agent_id for r in group)
    base: dict[str, Any] = {
        "document_id": first.document_id,
        "task_index": first.task_index,
        "task": first.task,
    }
    ok = [r for r in group if r.status == "ok"]
    if not ok:
        return DocumentAnswer(
            **base, status="failed", error=_failed_chunks(group), sub_agent_ids=ids
        )
    if len(group) == 1:
        return _whole(first)
    found = [r for r in ok if r.outcome == "found"]
    distinct = list(dict.fromkeys(r.output for r in found if r.output))
    error = _failed_chunks(group)
    if not distinct:
        return DocumentAnswer(
            **base,
            status="ok",
            outcome="not_found",
            answer=NOT_FOUND,
            error=error,
            sub_agent_ids=ids,
        )
    # The evidence of the best chunk: a grounded one when any chunk's quote is in the document.
    best = next((r for r in found if r.grounded), found[0])
    if len({_normalise(d) for d in distinct}) == 1:
        answer = distinct[0]
    elif mode == "join":
        answer = "; ".join(
            f"{r.output} (part {r.chunk_index + 1}/{r.n_chunks})" for r in found if r.output
        )
    else:
        parts = "\n".join(f"(part {r.chunk_index + 1}/{r.n_chunks}) {r.output}" for r in found)
        prompt = reduce_prompt(first.task, parts)
        try:
            answer = scrub(clean_model_text((await llm().complete(prompt)).text))
        except Exception as exc:  # keep the partial answers rather than lose the document
            answer = "; ".join(distinct)
            failure = scrub(f"reduce failed ({type(exc).__name__}): {exc}")
            error = "; ".join(filter(None, [error, failure]))
    return DocumentAnswer(
        **base,
        status="ok",
        outcome="found",
        answer=answer,
        evidence=best.evidence,
        grounded=best.grounded,
        error=error,
        sub_agent_ids=ids,
    )


async def reduce_chunks(
    sub_results: list[SubResult], *, mode: ReduceMode, llm: Callable[[], ModelAccess]
) -> list[DocumentAnswer]:
    """One `DocumentAnswer` per (document, task), in the order the sub-results are given.

    Args:
        sub_results: every sub-agent's result, grouped by document and task (request order).
        mode: "llm" merges disagreeing chunks with one call; "join" lists them.
        llm: makes a fresh `ModelAccess` for each merge call (so each is counted).
    """
    groups = [list(g) for _, g in groupby(sub_results, key=lambda r: (r.document_id, r.task_index))]
    answers = [_whole(g[0]) if len(g) == 1 else None for g in groups]
    # Only chunked documents may need a model call; a coroutine per document would cost a task
    # each at 100,000 documents for nothing.
    chunked = [i for i, a in enumerate(answers) if a is None]
    merged = await asyncio.gather(*(_reduce_group(groups[i], mode, llm) for i in chunked))
    for i, answer in zip(chunked, merged, strict=True):
        answers[i] = answer
    return [a for a in answers if a is not None]
