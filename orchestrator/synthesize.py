"""Merging the selected findings into one answer that cites its documents.

Synthesizers see only the findings the coordinator selected (found, relevant, grounded first), in
rank order. `LLMSynthesizer` makes no call for a single finding, one call for several, and a tree of
calls when the findings do not fit one context (batches that fit, then their summaries, each line
keeping its ``[doc]`` brackets); if a call fails it falls back to the ranked findings and says so.
`CollectSynthesizer` makes no call. Neither reports failures, abstentions or citations: the
coordinator builds those from its own fields (`fanout.orchestrator._citations`).

Findings are shown to the model as "- answer [alias]" lines: a document is named by its alias (its
1-based position in the request), never by its id, and a synthesizer's answer cites aliases, which
the coordinator maps back to ids (`fanout.orchestrator._aliases`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from fanout.agents._prompts import prompt_text
from fanout.agents.subagent import ModelAccess

from ._aliases import DocumentAliases
from ._citations import CitedLine, Evidence, check_citations, relabel, sanitize_model_text
from ._prompts import synthesis_prompt
from .context import RunContext
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
    """Text of the answer, citing documents by alias in brackets ("[1]", "[2, 3]")."""
    sources: tuple[str, ...] | None = None
    """The ids the answer's aliases stand for: "[1]" is ``sources[0]``. None: the request's
    documents in order (what `finding_line` with ``DocumentAliases.of(request)`` writes)."""
    error: str | None = None
    """Why merging failed; the answer is then the ranked findings, listed."""
    rounds: int = 0
    """Rounds of synthesis calls (0: none; above 1: the findings needed a tree)."""


def selected_findings(answers: Sequence[DocumentAnswer], task_index: int) -> list[DocumentAnswer]:
    """One task's selected findings, best first."""
    chosen = [a for a in answers if a.task_index == task_index and a.selected]
    return sorted(chosen, key=lambda a: a.rank or 0)


def _finding_text(answer: DocumentAnswer, with_task: bool) -> str:
    """A finding's answer on one line, its brackets made parentheses (they would read as citations)."""
    task = f"({answer.task}) " if with_task else ""
    text = " ".join(sanitize_model_text(answer.answer or "").split())
    return (task + text).replace("[", "(").replace("]", ")")


def _finding(answer: DocumentAnswer, with_task: bool) -> CitedLine:
    assert answer.document_id is not None, "a finding comes from one document"
    return CitedLine.of(_finding_text(answer, with_task), answer.document_id)


def finding_line(
    answer: DocumentAnswer, aliases: DocumentAliases, *, with_task: bool = False
) -> str:
    """One finding as "- answer [alias]": the layout synthesis prompts show and citations use."""
    return _finding(answer, with_task).render(aliases.alias)


def collect_findings(request: Request, answers: Sequence[DocumentAnswer]) -> str:
    """Every selected finding under its task, best first: the answer when nothing is merged."""
    aliases = DocumentAliases.of(request)
    tasks = request.tasks
    lines: list[str] = []
    for index, task in enumerate(tasks):
        if len(tasks) > 1:
            lines.append(f"{index + 1}. {task}")
        lines += [finding_line(a, aliases) for a in selected_findings(answers, index)]
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
    Each prompt numbers its documents in the order its findings are shown ([1] is the first), the
    order a small model numbers them in anyway (Gemma 270M renumbered "[3] [1] [2]" as "[1] [2]
    [3]" when the aliases were request positions).
    """

    async def __call__(self, ctx: RunContext[Any], answers: list[DocumentAnswer[Any]]) -> Synthesis:
        """Answer the question (or each instruction) from the findings (``ctx.model`` calls)."""
        request = ctx.request
        texts = {d.id: d.text for d in request.documents}

        def llm() -> ModelAccess:
            return ctx.model

        if request.question is not None:
            findings = [f for i in range(len(request.tasks)) for f in selected_findings(answers, i)]
            return await self._merge(
                request.question, findings, texts, llm, bool(request.instructions)
            )
        parts = await asyncio.gather(
            *(
                self._merge(task, selected_findings(answers, i), texts, llm, False)
                for i, task in enumerate(request.tasks)
            )
        )
        if len(parts) == 1:
            return parts[0]
        # One alias space for the joined answer: each part's own aliases are relabelled into it.
        shared = _aliases_of(i for p in parts for i in (p.sources or ()))
        text = "\n".join(
            f"{i}. {task}: {relabel(part.answer, DocumentAliases(part.sources or ()), shared)}"
            for i, (task, part) in enumerate(zip(request.tasks, parts, strict=True), 1)
        )
        errors = [p.error for p in parts if p.error]
        return Synthesis(
            answer=text,
            sources=shared.ids,
            error="; ".join(errors) if errors else None,
            rounds=max(p.rounds for p in parts),
        )

    async def _merge(
        self,
        question: str,
        findings: list[DocumentAnswer],
        texts: Mapping[str, str],
        llm: Callable[[], ModelAccess],
        with_task: bool,
    ) -> Synthesis:
        if not findings:
            return Synthesis(answer="", sources=())
        lines = [_finding(a, with_task) for a in findings]
        shown = _aliases_of(i for line in lines for i in line.ids)
        if len(findings) == 1 and not with_task:
            return Synthesis(answer=lines[0].render(shown.alias)[2:], sources=shown.ids)
        try:
            text, aliases, rounds = await self._merge_in_rounds(question, lines, texts, llm)
        except Exception as exc:  # keep every finding rather than lose the run
            return Synthesis(
                answer="\n".join(line.render(shown.alias) for line in lines),
                sources=shown.ids,
                error=f"{type(exc).__name__}: {exc}",
            )
        return Synthesis(answer=text, sources=aliases.ids, rounds=rounds)

    async def _merge_in_rounds(
        self,
        question: str,
        lines: list[CitedLine],
        texts: Mapping[str, str],
        llm: Callable[[], ModelAccess],
    ) -> tuple[str, DocumentAliases, int]:
        """Merge finding lines in as many rounds as their size needs; (answer, its aliases, rounds)."""
        rounds = 0
        while True:
            # Sized with aliases as long as any batch's can be; each batch then numbers its own.
            everyone = _aliases_of(i for line in lines for i in line.ids)
            sizes = [line.render(everyone.alias) for line in lines]
            batches = _pack(question, sizes, llm())
            groups: list[tuple[list[CitedLine], DocumentAliases]] = []
            start = 0
            for batch in batches:
                group = lines[start : start + len(batch)]
                groups.append((group, _aliases_of(i for line in group for i in line.ids)))
                start += len(batch)
            outputs = await asyncio.gather(
                *(_call(question, [ln.render(a.alias) for ln in g], llm) for g, a in groups)
            )
            rounds += 1
            if len(groups) == 1:
                return outputs[0], groups[0][1], rounds
            merged: list[CitedLine] = []
            for (group, aliases), output in zip(groups, outputs, strict=True):
                merged += _provenanced(output, group, aliases, texts, question)
            if len(merged) >= len(lines) or rounds >= _MAX_ROUNDS:
                # the model cannot shorten it: list it
                listed = _aliases_of(i for line in merged for i in line.ids)
                return "\n".join(ln.render(listed.alias) for ln in merged), listed, rounds
            lines = merged


def _aliases_of(ids: Iterable[str]) -> DocumentAliases:
    """Aliases for the documents of one prompt, numbered in the order they are first shown."""
    return DocumentAliases(list(dict.fromkeys(ids)))


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


def _list_item(line: CitedLine) -> CitedLine:
    """`line` as a "- " list item, as the findings were shown."""
    first, rest = line.parts[0], line.parts[1:]
    if isinstance(first, str):
        first = first.lstrip()
        return CitedLine((first if first.startswith("- ") else f"- {first}", *rest))
    return CitedLine(("- ", *line.parts))


def _provenanced(
    output: str,
    batch: list[CitedLine],
    aliases: DocumentAliases,
    texts: Mapping[str, str],
    question: str,
) -> list[CitedLine]:
    """A round's output reduced to checked claims, plus every batch line it did not carry.

    An intermediate line survives only when its citation passes the same check as the final
    answer's (the alias is of this batch, the claim agrees with that line). A finding whose
    document no surviving line cites goes on to the next round as it was: a small model that
    garbles or drops lines while merging shortens nothing, so the tree ends in a list, not in
    lost findings.
    """
    findings: dict[str, list[str]] = {}
    for line in batch:
        for doc_id in line.ids:
            findings.setdefault(doc_id, []).append(line.claim)
    evidence = Evidence(documents=texts, findings=findings, request_text=[question])
    checked = check_citations(output, aliases=aliases, evidence=evidence)
    kept = [_list_item(line) for line in checked.lines if line.ids]
    covered = {i for line in kept for i in line.ids}
    return kept + [line for line in batch if not covered & set(line.ids)]
