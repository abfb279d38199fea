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

from fanout.agents._secrets import scrub, scrub_value
from fanout.agents.backend import Usage

from ._aliases import inline_id
from .auto import StrategyChoice

__all__ = [
    "NOTE_ID_LIMIT",
    "DocumentAnswer",
    "Exclusion",
    "InvalidCitation",
    "Outcome",
    "RunResult",
    "RunUsage",
    "Status",
    "SubResult",
    "UnsupportedLine",
]

NOTE_ID_LIMIT = 60
"""Characters of a model-invented id shown in a note (the result keeps it whole)."""
_EXCLUSION = {
    "outranked": "outranked by a finding that matches the question better",
    "ungrounded": "neither its quote nor its answer is in the document",
}


def _shown_id(text: str) -> str:
    shown = inline_id(text)
    return shown if len(shown) <= NOTE_ID_LIMIT else shown[:NOTE_ID_LIMIT] + "…"


DataT = TypeVar("DataT", default=Any)
"""The type of structured data: the output schema's model, or Any (JSON objects) without one."""

Status = Literal["ok", "failed"]
Exclusion = Literal["outranked", "ungrounded"]
"""Why a found answer was not used: another document's finding matched the question much better,
or neither its quote nor its answer is in its document while a supported finding exists."""
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

    def redacted(self) -> SubResult[DataT]:
        """A copy with credentials scrubbed from its text and data (`fanout.agents._secrets`).

        A server may echo the key inside a 200 answer: the coordinator stores, checkpoints and
        shows sub-results only as this returns them.
        """
        update: dict[str, Any] = {}
        for name in ("output", "evidence", "error"):
            value = getattr(self, name)
            if value is not None and (clean := scrub(value)) != value:
                update[name] = clean
        if self.data is not None and (data := scrub_value(self.data)) != self.data:
            update["data"] = data
        return self.model_copy(update=update) if update else self


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
    relevant enough: see `fanout.orchestrator._relevance`)."""
    excluded: Exclusion | None = None
    """Why a found answer was not selected (None when selected or not found)."""
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


class UnsupportedLine(BaseModel):
    """A line the coordinator removed from the model's answer: nothing it cites says it."""

    model_config = ConfigDict(frozen=True)

    text: str
    """The claim as the model wrote it, without list marker and citations."""
    cited: list[str]
    """The documents it cited (or that the coordinator found for it); empty when none."""
    reason: str
    """says what its documents do not; or nothing selected says it (a line citing nothing)."""
    unbacked: list[str] = Field(default_factory=list)
    """Its words that no cited document holds."""


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
    unsupported: list[UnsupportedLine] = Field(default_factory=list)
    """Lines removed from the answer because no cited document (or, for a line citing none, no
    selected finding) says what they say."""
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
        """The coordinator's own report lines, built from fields and never from model text.

        Document ids in them are shown on one line (`inline_id`); an id the model invented is cut
        to `NOTE_ID_LIMIT` characters.
        """
        lines = [self._unanswered_note(task) for task in self.unanswered]
        lines += self._failure_notes()
        if self.unasked:
            shown = ", ".join(inline_id(d) for d in self.unasked[:10])
            lines.append(
                f"Not asked: {len(self.unasked)} document(s) the splitter left out "
                f"(a pre-filter kept the rest): {shown}"
                + (", ..." if len(self.unasked) > 10 else "")
            )
        if self.synthesis_error:
            lines.append(
                f"Synthesis failed ({self.synthesis_error}): the findings are listed as found"
            )
        for reason in ("outranked", "ungrounded"):
            dropped = [a for a in self.answers if a.excluded == reason and a.document_id]
            if dropped:
                why = _EXCLUSION[reason]
                names = ", ".join(dict.fromkeys(inline_id(a.document_id or "") for a in dropped))
                lines.append(f"Not used ({why}): {names}")
        if self.uncited:
            lines.append("Uncited: " + ", ".join(inline_id(d) for d in self.uncited))
        if self.invalid_citations:
            lines.append(
                "Removed citations: "
                + "; ".join(
                    f"{_shown_id(c.document_id)} ({c.reason})" for c in self.invalid_citations
                )
            )
        if self.unsupported:
            lines.append(
                f"Unsupported: {len(self.unsupported)} answer line(s) removed: "
                + "; ".join(
                    f"citing {', '.join(inline_id(d) for d in u.cited) or 'nothing'} ({u.reason})"
                    for u in self.unsupported
                )
            )
        return lines

    def _failure_notes(self) -> list[str]:
        """Which sub-agents failed and why; and when a budget stopped some, how to finish."""
        failed = self.failed
        if not failed:
            return []
        multi_task = len({r.task_index for r in self.sub_results}) > 1
        parts = []
        for r in failed:
            where = inline_id(r.document_id) if r.document_id else "all documents"
            if r.n_chunks > 1:
                where += f" chunk {r.chunk_index + 1}/{r.n_chunks}"
            if multi_task:
                where += f" task {r.task_index + 1}"
            parts.append(f"{where} ({r.error})")
        lines = [
            f"Missing: {len(failed)} of {len(self.sub_results)} sub-agents failed: "
            + "; ".join(parts)
        ]
        budget = [r for r in failed if (r.error or "").startswith("BudgetExceeded")]
        if budget:
            lines.append(
                f"Budget reached: {len(budget)} sub-agent(s) not run (a call would have passed "
                "the run's budget); rerun the same run id with a larger budget to finish them"
            )
        return lines

    def _unanswered_note(self, task: str) -> str:
        """Why a task has no answer: every sub-agent failed, none was backed, or none answers."""
        mine = [a for a in self.answers if a.task == task] or self.answers
        failed = sum(a.status == "failed" for a in mine)
        if mine and failed == len(mine):
            return f"Not answered: every sub-agent failed ({failed} of {len(mine)}): {task}"
        if self.unsupported or self.invalid_citations:
            return f"No supported answer: the answer's lines were removed: {task}"
        if failed:
            return (
                f"No document answers: {task} ({failed} of {len(mine)} documents could not be "
                "asked: the answer may be in them)"
            )
        return f"No document answers: {task}"

    def report(self) -> str:
        """The answer, then the coordinator's notes after a rule, so model text cannot pose as them."""
        notes = self.notes
        if not notes:
            return self.answer
        return f"{self.answer}\n---\n" + "\n".join(f"fanout: {line}" for line in notes)
