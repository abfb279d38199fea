"""The stages a run is built from, each a small protocol with fanout's default.

    split -> sub-agent (one per sub-task, fanned out) -> reduce (fan-in) -> rank -> synthesize
                                                                             -> check citations

Every stage receives the run's `RunContext` first. A `Stages` value names one implementation of
each; `Coordinator` is the preset built from the defaults, and `fanout.orchestrator.kit` builds the
same graph from whatever stages you give it. The runtime around the stages (concurrency, retries,
timeouts, the result store, failure policy, hooks, accounting) is the same for all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from fanout.agents.subagent import SubAgentOutput, answer_task
from fanout.agents.task import SubTask

from ._aliases import DocumentAliases
from ._citations import CheckedAnswer, Evidence, check_citations
from ._reduce import reduce_chunks
from ._relevance import select_findings
from .context import RunContext
from .result import DocumentAnswer, SubResult
from .split import DocumentSplitter
from .synthesize import LLMSynthesizer, Synthesis

__all__ = [
    "ChunkReducer",
    "CitationChecker",
    "Ranker",
    "Reducer",
    "Splitter",
    "Stages",
    "SubAgent",
    "Synthesizer",
    "check_answer",
    "rank_findings",
]


SubAgent: TypeAlias = Callable[[RunContext[Any]], Awaitable[SubAgentOutput]]
"""A sub-agent: ``async def my_agent(ctx: RunContext) -> str | Finding | dict | BaseModel``."""


class Splitter(Protocol):
    """Request -> sub-tasks: one per (document, task, chunk) by default."""

    def __call__(self, ctx: RunContext[Any]) -> list[SubTask]:
        """The sub-tasks of ``ctx.request``, each with a stable id (results are keyed by it)."""
        ...


class Reducer(Protocol):
    """The fan-in: every sub-result -> one `DocumentAnswer` per (document, task)."""

    def __call__(
        self, ctx: RunContext[Any], results: list[SubResult[Any]]
    ) -> Awaitable[list[DocumentAnswer[Any]]]:
        """Merge each chunked document's partial answers (results come in sub-task order)."""
        ...


class Ranker(Protocol):
    """Which findings answer each task: sets `selected`, `rank` and `relevance`."""

    def __call__(
        self, ctx: RunContext[Any], answers: list[DocumentAnswer[Any]]
    ) -> list[DocumentAnswer[Any]]:
        """Every answer, with the ones that should reach synthesis marked `selected`."""
        ...


class Synthesizer(Protocol):
    """The selected findings -> one answer citing document ids (``ctx.model`` for calls)."""

    def __call__(
        self, ctx: RunContext[Any], answers: list[DocumentAnswer[Any]]
    ) -> Awaitable[Synthesis]:
        """Merge the `selected` answers (every answer is given, failed and unselected marked)."""
        ...


class CitationChecker(Protocol):
    """Which citations of an answer stand: each must be backed by the cited document."""

    def __call__(
        self, ctx: RunContext[Any], synthesis: Synthesis, answers: list[DocumentAnswer[Any]]
    ) -> CheckedAnswer:
        """The synthesis' text with unsupported citations removed and recorded."""
        ...


@dataclass(frozen=True, kw_only=True)
class ChunkReducer:
    """The default fan-in: a document's chunk answers merged, with a model call only on disagreement."""

    mode: Literal["llm", "join"] = "llm"
    """llm: one call merges chunks that disagree; join: list them, never call."""

    async def __call__(
        self, ctx: RunContext[Any], results: list[SubResult[Any]]
    ) -> list[DocumentAnswer[Any]]:
        """One answer per (document, task)."""
        return await reduce_chunks(results, mode=self.mode, llm=lambda: ctx.model)


def rank_findings(
    ctx: RunContext[Any], answers: list[DocumentAnswer[Any]]
) -> list[DocumentAnswer[Any]]:
    """The default ranker: found, relevant to the question (BM25), grounded ones first.

    Relevance ranks findings of a question over documents; instructions every document should
    answer, and known pairings, keep every finding.
    """
    request = ctx.request
    texts = {d.id: d.text for d in request.documents}
    rank = request.question is not None and not request.instructions and not request.paired
    selected: list[DocumentAnswer[Any]] = []
    for index, task in enumerate(request.tasks):
        mine = [a for a in answers if a.task_index == index]
        selected += select_findings(task, mine, texts, rank=rank)
    order = {(a.document_id, a.task_index): i for i, a in enumerate(answers)}
    return sorted(selected, key=lambda a: order[(a.document_id, a.task_index)])


def check_answer(
    ctx: RunContext[Any], synthesis: Synthesis, answers: list[DocumentAnswer[Any]]
) -> CheckedAnswer:
    """The default check: a citation stands when the cited document's selected finding backs it.

    The synthesis cites documents by the aliases its prompt showed (`Synthesis.sources`; the
    request's order when None). One prompt's answer (every document in one context: no
    per-document finding) may cite any document of the request.
    """
    request = ctx.request
    aliases = (
        DocumentAliases.of(request)
        if synthesis.sources is None
        else DocumentAliases(synthesis.sources)
    )
    texts = {d.id: d.text for d in request.documents}
    asked = [request.question or "", *request.tasks]
    if answers and all(a.document_id is None for a in answers):
        # one prompt read every document: the documents themselves back its lines
        evidence = Evidence(documents=texts, findings=None, request_text=asked)
        return check_citations(synthesis.answer, aliases=aliases, evidence=evidence)
    findings: dict[str, list[str]] = {}
    for a in answers:
        if a.selected and a.document_id is not None:
            findings.setdefault(a.document_id, []).append(a.answer or "")
    evidence = Evidence(documents=texts, findings=findings, request_text=asked)
    return check_citations(synthesis.answer, aliases=aliases, evidence=evidence)


def _default_synthesizer() -> Synthesizer:
    return LLMSynthesizer()


@dataclass(frozen=True, kw_only=True)
class Stages:
    """One implementation of each stage; every field defaults to fanout's own."""

    split: Splitter = field(default_factory=DocumentSplitter)
    """Request -> sub-tasks."""
    sub_agent: SubAgent = answer_task
    """One sub-task -> a finding (text, a `Finding`, a dict or a pydantic model)."""
    reduce: Reducer = field(default_factory=ChunkReducer)
    """Sub-results -> one answer per (document, task)."""
    rank: Ranker = rank_findings
    """Answers -> the findings selected for synthesis."""
    synthesize: Synthesizer = field(default_factory=_default_synthesizer)
    """Selected findings -> one cited answer."""
    check: CitationChecker = check_answer
    """The answer -> only the citations its documents back."""
