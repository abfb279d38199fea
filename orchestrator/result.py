"""Typed results: one `SubResult` per sub-agent, one `DocumentAnswer` per (document, task), one `RunResult`.

Each is generic in its structured data: with ``Coordinator(..., output_schema=Invoice)`` a run gives
a ``RunResult[Invoice]`` whose ``data`` fields are ``Invoice`` instances. Inside the graph, in the
result store and in checkpoints the data travels as JSON objects; the coordinator validates it into
the schema when it builds the result.
"""

from __future__ import annotations

from typing import Any, Generic, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypeVar

from fanout.agents.backend import Usage

from .auto import StrategyChoice

__all__ = [
    "DocumentAnswer",
    "InvalidCitation",
    "Outcome",
    "RunResult",
    "RunUsage",
    "Status",
    "SubResult",
]

DataT = TypeVar("DataT", default=Any)
"""The type of structured data: the output schema's model, or Any (JSON objects) without one."""

Status = Literal["ok", "failed"]
Outcome = Literal["found", "not_found", "failed"]
"""What a sub-agent (or a document, after its chunks are merged) made of its task: an answer with
its evidence, an explicit "this document does not answer it", or a failure."""


class SubResult(BaseModel, Generic[DataT]):
    """What one sub-agent produced, with its provenance and cost."""

    model_config = ConfigDict(frozen=True)

    sub_agent_id: str
    """Stable id of the sub-task (document, chunk, task); the key results are stored under."""
    document_id: str | None
    """The one document this sub-agent read; None for a monolithic call that read them all."""
    chunk_index: int = 0
    """Which chunk of the document (0 when the document fitted whole)."""
    n_chunks: int = 1
    """How many chunks the document was cut into."""
    task_index: int = 0
    """Index into `Request.tasks`."""
    task: str
    """The question or instruction this sub-agent answered."""
    status: Status
    """ok (the sub-agent ran to an answer or an abstention), or failed after retries."""
    outcome: Outcome = "found"
    """found, not_found (the document does not answer the task) or failed; set from `status`
    and the answer when not given."""
    output: str | None = None
    """The answer text (None when failed)."""
    evidence: str | None = None
    """The sub-agent's verbatim quote from its document backing the answer, when it gave one."""
    grounded: bool | None = None
    """Whether the quote (or, without one, the answer itself) occurs in the document, compared with
    case and whitespace normalised; None when nothing was found."""
    data: DataT | None = None
    """Validated structured output, when an output schema was given."""
    error: str | None = None
    """Why it failed: the error type and message, never a traceback."""
    attempts: int = 0
    """Backend calls attempted, retries included."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens, calls and latency of this sub-agent's successful calls."""

    @model_validator(mode="before")
    @classmethod
    def _failed_means_failed(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("status") == "failed":
            return {**data, "outcome": "failed"}
        return data


class DocumentAnswer(BaseModel, Generic[DataT]):
    """The answer to one task from one document, after its chunks' partial answers were reduced."""

    model_config = ConfigDict(frozen=True)

    document_id: str | None
    """The document (None for a monolithic answer covering all)."""
    task_index: int
    """Index into `Request.tasks`."""
    task: str
    """The question or instruction."""
    status: Status
    """failed when no chunk of the document produced an answer."""
    outcome: Outcome = "found"
    """found, not_found (no chunk of the document answers the task) or failed."""
    answer: str | None = None
    """The answer (None when failed)."""
    evidence: str | None = None
    """The quote backing the answer, from the chunk that found it."""
    grounded: bool | None = None
    """Whether that quote (or the answer) occurs in the document; an ungrounded finding is ranked
    below every grounded one and used only when no grounded finding exists."""
    relevance: float | None = None
    """BM25 score of the question against this finding's evidence and document, among the
    request's findings; None when not ranked (one finding, instructions, known pairing)."""
    selected: bool = False
    """Whether the answer was built from this finding (found, grounded if any finding is, and
    relevant enough: see `fanout.orchestrator.relevance`)."""
    rank: int | None = None
    """1 for the finding that best matches the task, among the found ones."""
    data: DataT | None = None
    """Structured answer, when an output schema was given and the document was not chunked."""
    error: str | None = None
    """Why it is missing, or which chunks failed."""
    sub_agent_ids: tuple[str, ...] = ()
    """Provenance: the sub-agents whose outputs this answer came from."""

    @model_validator(mode="before")
    @classmethod
    def _failed_means_failed(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("status") == "failed":
            return {**data, "outcome": "failed"}
        return data


class InvalidCitation(BaseModel):
    """A citation the coordinator removed from the model's answer, and why."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    """The id as the model wrote it."""
    claim: str
    """The text the model attributed to it."""
    reason: str
    """not a document of the request; no finding from that document; or disagrees with that
    document's own finding."""


class RunUsage(BaseModel):
    """What a whole run cost."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    """Prompt tokens over every call (sub-agents, reduce, synthesis)."""
    completion_tokens: int = 0
    """Completion tokens over every call."""
    calls: int = 0
    """Successful model calls."""
    wall_s: float = 0.0
    """Seconds from the start of the run to its answer."""
    cost_usd: float = 0.0
    """From the backend's price table; 0 for local models."""
    cached_prompt_tokens: int = 0
    """Of the prompt tokens, those not evaluated again (a reused prefix, a provider's cache)."""
    stages: dict[str, Usage] = Field(default_factory=dict)
    """The same split by stage: sub_agents, reduce, synthesis."""
    synthesis_rounds: int = 0
    """Rounds of synthesis calls: 0 none, 1 one call, more when the findings needed a tree."""

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_stages(
        cls, stages: dict[str, Usage], wall_s: float, *, synthesis_rounds: int = 0
    ) -> RunUsage:
        """Sum per-stage usage into run totals."""
        total = sum(stages.values(), Usage())
        return cls(
            synthesis_rounds=synthesis_rounds,
            prompt_tokens=total.prompt_tokens,
            completion_tokens=total.completion_tokens,
            calls=total.calls,
            wall_s=wall_s,
            cost_usd=total.cost_usd,
            cached_prompt_tokens=total.cached_prompt_tokens,
            stages=stages,
        )


class RunResult(BaseModel, Generic[DataT]):
    """The outcome of one request."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    """Id of the run (the LangGraph thread id when checkpointed)."""
    strategy: Literal["isolated", "monolithic"]
    """How the request was executed."""
    choice: StrategyChoice | None = None
    """With ``strategy="auto"``: what was chosen and why (the estimate, the profile rows used)."""
    answer: str
    """The synthesized answer, naming any documents whose sub-agents failed."""
    answers: list[DocumentAnswer[DataT]]
    """One per (document, task), in request order; failed ones included."""
    sub_results: list[SubResult[DataT]]
    """One per sub-agent, in request order."""
    citations: list[str] = Field(default_factory=list)
    """Document ids the answer cites, each checked against that document's own finding."""
    invalid_citations: list[InvalidCitation] = Field(default_factory=list)
    """Citations removed from the answer: invented ids, documents without a finding, or claims
    that disagree with the cited document's finding."""
    uncited: list[str] = Field(default_factory=list)
    """Documents whose selected finding the answer does not cite (the synthesizer left it out)."""
    unanswered: list[str] = Field(default_factory=list)
    """Tasks that no document answers (every sub-agent abstained or failed)."""
    unasked: list[str] = Field(default_factory=list)
    """Documents no sub-agent read: the splitter left them out (a top-k pre-filter)."""
    synthesis_error: str | None = None
    """Why synthesis failed; the answer is then the ranked per-document findings, uncombined."""
    usage: RunUsage = Field(default_factory=RunUsage)
    """Tokens, calls, wall time and cost."""

    @property
    def missing(self) -> list[DocumentAnswer[DataT]]:
        """The (document, task) pairs no sub-agent answered."""
        return [a for a in self.answers if a.status == "failed"]

    @property
    def failed(self) -> list[SubResult[DataT]]:
        """Sub-agents that failed (a chunk may fail while its document still gets an answer)."""
        return [r for r in self.sub_results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when every sub-agent and the synthesis succeeded (a "not found" is a success)."""
        return not self.failed and self.synthesis_error is None

    @property
    def notes(self) -> list[str]:
        """The coordinator's own report lines, built from fields and never from model text."""
        lines: list[str] = []
        for task in self.unanswered:
            lines.append(f"No document answers: {task}")
        failed = self.failed
        if failed:
            multi_task = len({r.task_index for r in self.sub_results}) > 1
            parts = []
            for r in failed:
                where = r.document_id or "all documents"
                if r.n_chunks > 1:
                    where += f" chunk {r.chunk_index + 1}/{r.n_chunks}"
                if multi_task:
                    where += f" task {r.task_index + 1}"
                parts.append(f"{where} ({r.error})")
            lines.append(
                f"Missing: {len(failed)} of {len(self.sub_results)} sub-agents failed: "
                + "; ".join(parts)
            )
        budget = [r for r in failed if (r.error or "").startswith("BudgetExceeded")]
        if budget:
            lines.append(
                f"Budget reached: {len(budget)} sub-agent(s) not run (a call would have passed "
                "the run's budget); rerun the same run id with a larger budget to finish them"
            )
        if self.unasked:
            shown = ", ".join(self.unasked[:10]) + (", ..." if len(self.unasked) > 10 else "")
            lines.append(
                f"Not asked: {len(self.unasked)} document(s) the splitter left out "
                f"(a pre-filter kept the rest): {shown}"
            )
        if self.synthesis_error:
            lines.append(
                f"Synthesis failed ({self.synthesis_error}): the findings are listed as found"
            )
        if self.uncited:
            lines.append("Uncited: " + ", ".join(self.uncited))
        if self.invalid_citations:
            lines.append(
                "Removed citations: "
                + "; ".join(f"{c.document_id} ({c.reason})" for c in self.invalid_citations)
            )
        return lines

    def report(self) -> str:
        """The answer, then the coordinator's notes after a rule, so model text cannot pose as them."""
        notes = self.notes
        if not notes:
            return self.answer
        return f"{self.answer}\n---\n" + "\n".join(f"fanout: {line}" for line in notes)
