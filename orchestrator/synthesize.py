"""Merging the selected findings into one answer that cites its documents.

Synthesizers see only the findings the coordinator selected (found, relevant, grounded first), in
rank order. `LLMSynthesizer` makes no call for a single finding, one call for several, and a tree of
calls when the findings do not fit one context (batches that fit, then their summaries, each line
keeping its ``[doc]`` brackets); if a call fails it falls back to the ranked findings and says so.
`CollectSynthesizer` makes no call. Neither reports failures, abstentions or citations: the
coordinator builds those from its own fields (`fanout.orchestrator.citations`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from fanout.agents.prompts import prompt_text

from .citations import check_citations, cited_ids, claim_text, sanitize_model_text
from .context import ModelAccess, RunContext
from .prompts import synthesis_prompt
from .request import Request
from .result import DocumentAnswer

__all__ = [
    "CollectSynthesizer",
    "LLMSynthesizer",
    "Synthesis",
    "collect_findings",
    "finding_line",
    "selected_findings",
]

# Completion budget of one synthesis call, and tokens kept free for template drift.
_SYNTH_MAX_TOKENS = 256
_MARGIN = 32
# A tree that stops shrinking is a list the model cannot shorten: stop and list the findings.
_MAX_ROUNDS = 8


class Synthesis(BaseModel):
    """The merged answer, before the coordinator checks its citations."""

    model_config = ConfigDict(frozen=True)

    answer: str
    """Text of the answer, citing document ids in brackets."""
    error: str | None = None
    """Why merging failed; the answer is then the ranked findings, listed."""
    rounds: int = 0
    """Rounds of synthesis calls (0: none; above 1: the findings needed a tree)."""


def selected_findings(answers: Sequence[DocumentAnswer], task_index: int) -> list[DocumentAnswer]:
    """One task's selected findings, best first."""
    chosen = [a for a in answers if a.task_index == task_index and a.selected]
    return sorted(chosen, key=lambda a: a.rank or 0)


def finding_line(answer: DocumentAnswer, *, with_task: bool = False) -> str:
    """One finding as "- answer [doc]": the layout synthesis prompts show and citations use."""
    task = f"({answer.task}) " if with_task else ""
    text = " ".join(sanitize_model_text(answer.answer or "").split())
    return f"- {task}{text} [{answer.document_id}]"


def _listed(findings: Sequence[DocumentAnswer], with_task: bool) -> str:
    return "\n".join(finding_line(a, with_task=with_task) for a in findings)


def collect_findings(request: Request, answers: Sequence[DocumentAnswer]) -> str:
    """Every selected finding under its task, best first: the answer when nothing is merged."""
    tasks = request.tasks
    lines: list[str] = []
    for index, task in enumerate(tasks):
        if len(tasks) > 1:
            lines.append(f"{index + 1}. {task}")
        lines += [finding_line(a) for a in selected_findings(answers, index)]
    return "\n".join(lines)


class CollectSynthesizer:
    """No extra call: the answer is the list of selected findings, best first, grouped by task."""

    async def __call__(self, ctx: RunContext[Any], answers: list[DocumentAnswer[Any]]) -> Synthesis:
        """List every selected finding under its task."""
        return Synthesis(answer=collect_findings(ctx.request, answers))


class LLMSynthesizer:
    """Answers the question (or each instruction) from the selected findings, citing document ids.

    A single finding is the answer as it stands (no call). Findings that do not fit one context are
    merged in rounds. A failed call is not fatal: the answer falls back to the ranked findings.
    """

    async def __call__(self, ctx: RunContext[Any], answers: list[DocumentAnswer[Any]]) -> Synthesis:
        """Answer the question (or each instruction) from the findings (``ctx.model`` calls)."""
        request = ctx.request

        def llm() -> ModelAccess:
            return ctx.model

        if request.question is not None:
            findings = [f for i in range(len(request.tasks)) for f in selected_findings(answers, i)]
            return await self._merge(request.question, findings, llm, bool(request.instructions))
        parts = await asyncio.gather(
            *(
                self._merge(task, selected_findings(answers, i), llm, False)
                for i, task in enumerate(request.tasks)
            )
        )
        if len(parts) == 1:
            return parts[0]
        text = "\n".join(
            f"{i}. {task}: {part.answer}"
            for i, (task, part) in enumerate(zip(request.tasks, parts, strict=True), 1)
        )
        errors = [p.error for p in parts if p.error]
        return Synthesis(
            answer=text,
            error="; ".join(errors) if errors else None,
            rounds=max(p.rounds for p in parts),
        )

    async def _merge(
        self,
        question: str,
        findings: list[DocumentAnswer],
        llm: Callable[[], ModelAccess],
        with_task: bool,
    ) -> Synthesis:
        if not findings:
            return Synthesis(answer="")
        if len(findings) == 1 and not with_task:
            return Synthesis(answer=finding_line(findings[0])[2:])
        lines = [finding_line(a, with_task=with_task) for a in findings]
        try:
            text, rounds = await self._merge_in_rounds(question, lines, llm)
        except Exception as exc:  # keep every finding rather than lose the run
            return Synthesis(
                answer=_listed(findings, with_task), error=f"{type(exc).__name__}: {exc}"
            )
        return Synthesis(answer=text, rounds=rounds)

    async def _merge_in_rounds(
        self, question: str, lines: list[str], llm: Callable[[], ModelAccess]
    ) -> tuple[str, int]:
        """Merge finding lines in as many rounds as their size needs; (answer, rounds)."""
        rounds = 0
        while True:
            batches = _pack(question, lines, llm())
            outputs = await asyncio.gather(*(_call(question, batch, llm) for batch in batches))
            rounds += 1
            if len(batches) == 1:
                return outputs[0], rounds
            merged: list[str] = []
            for batch, output in zip(batches, outputs, strict=True):
                merged += _provenanced(output, batch)
            if len(merged) >= len(lines) or rounds >= _MAX_ROUNDS:
                return "\n".join(merged), rounds  # the model cannot shorten it: list it
            lines = merged


async def _call(question: str, lines: list[str], llm: Callable[[], ModelAccess]) -> str:
    completion = await llm().complete(
        synthesis_prompt(question, "\n".join(lines)), max_tokens=_SYNTH_MAX_TOKENS
    )
    return completion.text


def _pack(question: str, lines: list[str], access: ModelAccess) -> list[list[str]]:
    """All lines in one batch when their prompt fits the context; else consecutive batches.

    Batches of a tree also stay within one call's completion budget, so a model that copies its
    findings back can copy all of them.
    """
    window = access.context_window
    if window is None:
        return [lines]
    style = access.prompt_style
    overhead = access.count_tokens(prompt_text(synthesis_prompt(question, ""), style))
    room = window - overhead - _SYNTH_MAX_TOKENS - _MARGIN
    sizes = [access.count_tokens(line + "\n") for line in lines]
    if sum(sizes) <= room:
        return [lines]
    room = min(room, _SYNTH_MAX_TOKENS)
    if room < 16 or max(sizes) > room:
        raise ValueError(f"the synthesizer's context ({window} tokens) cannot hold a finding")
    batches: list[list[str]] = [[]]
    used = 0
    for line, size in zip(lines, sizes, strict=True):
        if batches[-1] and used + size > room:
            batches.append([])
            used = 0
        batches[-1].append(line)
        used += size
    return batches


def _provenanced(output: str, batch: list[str]) -> list[str]:
    """A round's output reduced to checked claims, plus every batch line it did not carry.

    An intermediate line survives only when its citation passes the same check as the final
    answer's (the id is of this batch, the claim agrees with that line). A finding whose document
    no surviving line cites goes on to the next round as it was: a small model that garbles or
    drops lines while merging shortens nothing, so the tree ends in a list, not in lost findings.
    """
    findings: dict[str, list[str]] = {}
    for line in batch:
        claim = claim_text(line)
        for doc_id in cited_ids(line):
            findings.setdefault(doc_id, []).append(claim)
    checked = check_citations(output, documents=list(findings), findings=findings)
    kept = [
        line.strip() if line.strip().startswith("- ") else f"- {line.strip()}"
        for line in checked.text.splitlines()
        if cited_ids(line)
    ]
    covered = {i for line in kept for i in cited_ids(line)}
    return kept + [line for line in batch if not covered & set(cited_ids(line))]
