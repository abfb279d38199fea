"""Typed results: one `SubResult` per sub-agent, one `DocumentAnswer` per (document, task), one `RunResult`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fanout.agents.backend import Usage

__all__ = ["DocumentAnswer", "RunResult", "RunUsage", "Status", "SubResult"]

Status = Literal["ok", "failed"]


class SubResult(BaseModel):
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
    """ok, or failed after retries."""
    output: str | None = None
    """The answer text (None when failed)."""
    data: dict[str, Any] | None = None
    """Validated structured output, when an output schema was given."""
    error: str | None = None
    """Why it failed: the error type and message, never a traceback."""
    attempts: int = 0
    """Backend calls attempted, retries included."""
    usage: Usage = Field(default_factory=Usage)
    """Tokens, calls and latency of this sub-agent's successful calls."""


class DocumentAnswer(BaseModel):
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
    answer: str | None = None
    """The answer (None when failed)."""
    data: dict[str, Any] | None = None
    """Structured answer, when an output schema was given and the document was not chunked."""
    error: str | None = None
    """Why it is missing, or which chunks failed."""
    sub_agent_ids: tuple[str, ...] = ()
    """Provenance: the sub-agents whose outputs this answer came from."""


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
    stages: dict[str, Usage] = Field(default_factory=dict)
    """The same split by stage: sub_agents, reduce, synthesis."""

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_stages(cls, stages: dict[str, Usage], wall_s: float) -> RunUsage:
        """Sum per-stage usage into run totals."""
        total = sum(stages.values(), Usage())
        return cls(
            prompt_tokens=total.prompt_tokens,
            completion_tokens=total.completion_tokens,
            calls=total.calls,
            wall_s=wall_s,
            cost_usd=total.cost_usd,
            stages=stages,
        )


class RunResult(BaseModel):
    """The outcome of one request."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    """Id of the run (the LangGraph thread id when checkpointed)."""
    strategy: Literal["isolated", "monolithic"]
    """How the request was executed."""
    answer: str
    """The synthesized answer, naming any documents whose sub-agents failed."""
    answers: list[DocumentAnswer]
    """One per (document, task), in request order; failed ones included."""
    sub_results: list[SubResult]
    """One per sub-agent, in request order."""
    citations: list[str] = Field(default_factory=list)
    """Document ids the answer cites."""
    usage: RunUsage = Field(default_factory=RunUsage)
    """Tokens, calls, wall time and cost."""

    @property
    def missing(self) -> list[DocumentAnswer]:
        """The (document, task) pairs no sub-agent answered."""
        return [a for a in self.answers if a.status == "failed"]

    @property
    def failed(self) -> list[SubResult]:
        """Sub-agents that failed (a chunk may fail while its document still gets an answer)."""
        return [r for r in self.sub_results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when every sub-agent succeeded."""
        return not self.failed
