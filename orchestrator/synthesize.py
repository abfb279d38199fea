"""Merging per-document answers into one answer that cites its documents.

`LLMSynthesizer` makes one more call over the labelled findings (findings are framed as data, so a
hostile document's answer is something to report, not an instruction to follow); `CollectSynthesizer`
makes no call and lists the per-document answers. Neither decides what to say about failed
sub-agents: the coordinator appends that itself, so no synthesizer can drop it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from .prompts import NOT_FOUND, synthesis_prompt
from .request import Request
from .result import DocumentAnswer, SubResult
from .subagent import ModelAccess

__all__ = [
    "CollectSynthesizer",
    "LLMSynthesizer",
    "Synthesis",
    "Synthesizer",
    "cited_ids",
    "missing_note",
]


class Synthesis(BaseModel):
    """The merged answer."""

    model_config = ConfigDict(frozen=True)

    answer: str
    """Text of the answer."""
    citations: list[str]
    """Document ids it cites, in first-cited order."""


class Synthesizer(Protocol):
    """Turns per-document answers into one answer. Use `llm()` for each model call made."""

    async def synthesize(
        self,
        request: Request,
        answers: list[DocumentAnswer],
        llm: Callable[[], ModelAccess],
    ) -> Synthesis:
        """Merge `answers` (failed ones included, marked) into one answer."""
        ...


def cited_ids(text: str, known: Sequence[str]) -> list[str]:
    """Document ids cited in brackets in `text`, known ones only, first-cited first."""
    known_set = set(known)
    found = [m.strip() for m in re.findall(r"\[([^\[\]]+)\]", text)]
    return list(dict.fromkeys(i for i in found if i in known_set))


def _is_found(answer: DocumentAnswer) -> bool:
    text = (answer.answer or "").strip().lower().strip(" .")
    return answer.status == "ok" and bool(text) and text != NOT_FOUND


def _finding(answer: DocumentAnswer, with_task: bool) -> str:
    task = f"({answer.task}) " if with_task else ""
    return f"- {task}{(answer.answer or '').strip()} [{answer.document_id}]"


class CollectSynthesizer:
    """No extra call: the answer is the list of per-document answers, grouped by task."""

    async def synthesize(
        self,
        request: Request,
        answers: list[DocumentAnswer],
        llm: Callable[[], ModelAccess],
    ) -> Synthesis:
        """List every successful answer under its task."""
        tasks = request.tasks
        lines: list[str] = []
        for index, task in enumerate(tasks):
            if len(tasks) > 1:
                lines.append(f"{index + 1}. {task}")
            for a in answers:
                if a.task_index == index and a.status == "ok":
                    lines.append(_finding(a, with_task=False))
        ids = [str(a.document_id) for a in answers if _is_found(a)]
        return Synthesis(answer="\n".join(lines), citations=list(dict.fromkeys(ids)))


class LLMSynthesizer:
    """One call over the labelled findings that answers the question and cites document ids.

    Calls are skipped where they add nothing: a single finding is the answer as it stands, and
    findings of "not found" are left out.
    """

    async def synthesize(
        self,
        request: Request,
        answers: list[DocumentAnswer],
        llm: Callable[[], ModelAccess],
    ) -> Synthesis:
        """Answer the question (or each instruction) from the findings."""
        known = [d.id for d in request.documents]
        if request.question is not None:
            text = await self._merge(request.question, answers, llm, bool(request.instructions))
        else:
            per_task = await asyncio.gather(
                *(
                    self._merge(task, [a for a in answers if a.task_index == i], llm, False)
                    for i, task in enumerate(request.tasks)
                )
            )
            if len(per_task) == 1:
                text = per_task[0]
            else:
                text = "\n".join(
                    f"{i}. {task}: {ans}"
                    for i, (task, ans) in enumerate(zip(request.tasks, per_task, strict=True), 1)
                )
        return Synthesis(answer=text, citations=cited_ids(text, known))

    async def _merge(
        self,
        question: str,
        answers: list[DocumentAnswer],
        llm: Callable[[], ModelAccess],
        with_task: bool,
    ) -> str:
        found = [a for a in answers if _is_found(a)]
        if not found:
            return NOT_FOUND
        if len(found) == 1 and not with_task:
            return f"{(found[0].answer or '').strip()} [{found[0].document_id}]"
        prompt = synthesis_prompt(question, "\n".join(_finding(a, with_task) for a in found))
        return (await llm().complete(prompt, max_tokens=256)).text


def missing_note(sub_results: list[SubResult]) -> str | None:
    """One plain line naming every failed sub-agent and why, or None when all succeeded."""
    failed = [r for r in sub_results if r.status == "failed"]
    if not failed:
        return None
    multi_task = len({r.task_index for r in sub_results}) > 1
    parts = []
    for r in failed:
        where = r.document_id or "all documents"
        if r.n_chunks > 1:
            where += f" chunk {r.chunk_index + 1}/{r.n_chunks}"
        if multi_task:
            where += f" task {r.task_index + 1}"
        parts.append(f"{where} ({r.error})")
    return f"Missing: {len(failed)} of {len(sub_results)} sub-agents failed: " + "; ".join(parts)
