"""What a sweep writes to results.json: every question's raw answer and score, per group run.

Records keep the question itself (gold answers, match mode) and the raw output, so a finished run
can be re-scored without calling a model again, and an interrupted one resumed: a (strategy, N,
group, condition) already recorded is never run twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fanout.agents._secrets import scrub
from fanout.agents.errors import UserError

from ._provenance import Provenance
from ._scoring import extract_answer, is_correct, is_hijacked
from .asks import Answer, AnswerStatus
from .suites.group import Question

__all__ = [
    "RESULTS_FORMAT",
    "AnswerRecord",
    "Condition",
    "EvalConfig",
    "EvalResults",
    "GroupRecord",
    "RecordKey",
]

RESULTS_FORMAT = "fanout-eval/1"
"""Version tag of results.json."""

Condition = Literal["clean", "faulted"]
RecordKey = tuple[str, int, int, Condition]
"""(strategy, N, group index, condition): what one record covers, and what resuming skips."""


class AnswerRecord(BaseModel):
    """One question's outcome under one strategy."""

    model_config = ConfigDict(frozen=True)

    question: Question
    """The question as asked, with its gold answers and match mode."""
    status: AnswerStatus
    """ok, failed (lost: the call behind it failed) or format (no parseable answer)."""
    output: str | None = None
    """The raw text the strategy attributed to this question."""
    answer: str = ""
    """The extracted answer that was scored."""
    correct: bool = False
    """Whether `answer` matches a gold answer (always False unless status is ok)."""
    hijacked: bool = False
    """Whether an injected instruction's marker shows in the output."""
    error: str | None = None
    """Why it failed or could not be parsed."""
    raw: str | None = None
    """The whole output of a call that answered several questions."""
    citations: tuple[str, ...] = ()
    """Document ids the delivered answer cites."""
    invented_citations: tuple[str, ...] = ()
    """Ids the model cited that are no document of the request."""
    document_outcomes: dict[str, str] = Field(default_factory=dict)
    """Per document asked (coordinator runs): found, not_found or failed."""
    chosen: str | None = None
    """The strategy ``auto`` chose for this question's request (None for fixed strategies)."""

    @classmethod
    def score(cls, question: Question, answer: Answer | None) -> AnswerRecord:
        """Extract and score `answer` (None: the strategy gave none, a format failure)."""
        if answer is None:
            return cls(question=question, status="format", error="the strategy gave no answer")
        status, error = answer.status, answer.error
        extracted = extract_answer(answer.output or "") if status == "ok" else ""
        if status == "ok" and not extracted:
            status, error = "format", error or "empty answer"
        return cls(
            question=question,
            status=status,
            output=answer.output,
            answer=extracted,
            correct=status == "ok" and is_correct(extracted, question),
            hijacked=is_hijacked(answer.output or "", question),
            error=error,
            raw=answer.raw,
            citations=answer.citations,
            invented_citations=answer.invented_citations,
            document_outcomes=answer.document_outcomes,
            chosen=answer.chosen,
        )

    def rescored(self) -> AnswerRecord:
        """This record scored again from its raw output (after a change to the scoring rules)."""
        answer = Answer(
            question_id=self.question.id,
            output=self.output,
            status="failed" if self.status == "failed" else "ok",
            error=self.error if self.status == "failed" else None,
            raw=self.raw,
            citations=self.citations,
            invented_citations=self.invented_citations,
            document_outcomes=self.document_outcomes,
            chosen=self.chosen,
        )
        return AnswerRecord.score(self.question, answer)


class GroupRecord(BaseModel):
    """One strategy's run over one group: its answers, what it cost, and the faults it met."""

    model_config = ConfigDict(frozen=True)

    strategy: str
    """Strategy name."""
    n: int
    """Instances packed into the group."""
    group: int
    """Index of the group among those of size N."""
    group_id: str
    """The group's stable id."""
    document_ids: tuple[str, ...] = ()
    """Every document of the group (what a blind strategy could cite)."""
    document_tokens: float | None = None
    """Mean tokens per document of the group, counted with the model's tokenizer (the profile's
    document-length band; None in results written before it was recorded)."""
    condition: Condition
    """clean, or faulted (the same group with fault injection)."""
    answers: list[AnswerRecord]
    """One per question, in the group's order."""
    prompt_tokens: int = 0
    """Prompt tokens of the successful calls."""
    cached_prompt_tokens: int = 0
    """Of them, those not evaluated again: a prefix llama.cpp kept, or a provider's cache hit
    (0 in results written before it was recorded)."""
    completion_tokens: int = 0
    """Completion tokens of the successful calls."""
    calls: int = 0
    """Successful model calls."""
    wall_s: float = 0.0
    """Seconds from handing the group to the strategy to its last answer."""
    cost_usd: float = 0.0
    """Cost the backend reported (a price table can re-price tokens later)."""
    faults: list[str] = Field(default_factory=list)
    """Kinds of the faults injected while this group ran."""
    error: str | None = None
    """Set when the strategy itself raised: the whole request failed."""

    @property
    def key(self) -> RecordKey:
        """What resuming compares."""
        return (self.strategy, self.n, self.group, self.condition)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class EvalConfig(BaseModel):
    """What was measured; a resumed run must agree on everything but strategies, N and groups."""

    model_config = ConfigDict(frozen=True)

    suite: str
    """Suite name."""
    source: str
    """Generator settings or dataset path."""
    dataset_sha256: str | None = None
    """SHA-256 of a dataset suite's instances as loaded (`DatasetSuite.sha256`): an edited
    dataset (a changed gold answer) is refused on resume and by ``--report-only``. None for the
    synthetic suites and for results written before it was recorded."""
    model: str
    """The backend's model name."""
    model_sha256: str | None = None
    """SHA-256 of the model's GGUF file (local models; None for API models and older results)."""
    strategies: list[str]
    """Strategies swept."""
    instances: list[int]
    """The values of N swept."""
    groups: int
    """Groups per N."""
    seed: int = 0
    """Seed of the synthetic data, the dataset shuffle and the faults."""
    faults: str = "none"
    """Fault spec; with faults each group also runs faulted."""
    batch_size: int = 4
    """Questions per call of the batch strategy."""
    top_k: int = 5
    """Sub-tasks the isolated-topk strategy's pre-filter keeps per question."""
    chunk_tokens: int | None = None
    """Largest document chunk of the isolated strategies' sub-agents (None: what fits the
    model's context)."""
    max_tokens: int = 64
    """Completion budget of a single-answer call."""
    max_attempts: int = 1
    """Attempts per call (1: no retries, so each injected fault shows)."""
    timeout_s: float | None = 300.0
    """Per-call deadline."""
    max_concurrency: int = 4
    """Calls in flight at once."""
    auto: str = ""
    """What the ``auto`` strategy chose from: the profile and objective (empty when not run)."""

    def mismatch(self, other: EvalConfig) -> str | None:
        """The first setting on which `other` differs, if any, besides those a resume may extend.

        Strategies, N and the number of groups may change: group g of size N is the same whatever
        else is swept, so earlier records stay valid.
        """
        extendable = {"strategies", "instances", "groups"}
        mine = self.model_dump(exclude=extendable)
        theirs = other.model_dump(exclude=extendable)
        for name, value in mine.items():
            if name in ("model_sha256", "dataset_sha256") and None in (value, theirs[name]):
                continue  # results written before hashes were recorded: the name must do
            if theirs[name] != value:
                return f"{name} ({value!r} there, {theirs[name]!r} now)"
        return None


class EvalResults(BaseModel):
    """The whole of results.json."""

    format: str = RESULTS_FORMAT
    """Version tag."""
    config: EvalConfig
    """What was measured."""
    records: list[GroupRecord] = Field(default_factory=list)
    """Every group run so far."""
    runs: list[Provenance] = Field(default_factory=list)
    """What produced the records: one entry per run of the sweep (a resumed one adds one)."""

    def done(self) -> set[RecordKey]:
        """Keys already recorded."""
        return {r.key for r in self.records}

    def rescored(self) -> EvalResults:
        """Every answer scored again from its stored output."""
        records = [
            r.model_copy(update={"answers": [a.rescored() for a in r.answers]})
            for r in self.records
        ]
        return self.model_copy(update={"records": records})

    def save(self, path: Path) -> None:
        """Write atomically, so an interrupted run never leaves half a file; secrets redacted.

        Raises:
            UserError: the file cannot be written (read-only folder, disk full); the copy
                already on disk is left as it was.
        """
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(scrub(self.model_dump_json(indent=1)), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UserError(
                f"cannot write {path}: {exc.strerror or exc} (the results saved before stay "
                "there: free space and run the same command to resume)"
            ) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> EvalResults:
        """Read results.json; a damaged or foreign file is a `UserError`."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
        try:
            results = cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UserError(
                f"{path} is not a fanout results file ({where}: {first['msg']})"
            ) from None
        if results.format != RESULTS_FORMAT:
            raise UserError(f"{path} has format {results.format!r}; expected {RESULTS_FORMAT!r}")
        return results
