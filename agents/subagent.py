"""What a sub-agent is, and fanout's own: a coroutine given a context holding one `SubTask`.

A sub-agent sees only its own document (or chunk) and its own task (``ctx.task``). It reaches the
model through ``ctx.model`` (a `ModelAccess`), which the coordinator implements with its concurrency
bound, timeouts, retries, accounting and hooks, so a user-written sub-agent (a function, or a whole
LangGraph graph) gets them for free. The context it receives is the run's
`fanout.orchestrator.RunContext`; this module asks only for what a sub-agent reads of it
(`AgentContext`), so the sub-agent lives with the models it calls and knows nothing of the
coordinator above it.

The default sub-agent's words live here too, in one place so a prompt change is one diff, measured
once (see the README's evaluation): the QA prompt over one document, the one prompt over every
document (the monolithic baseline), and how replies are read, "not found" included. Base models get
few-shot completion prompts; chat models get the same parts as messages (`fanout.agents._prompts`
renders both). The coordinator's own words (merging chunks, synthesis) are in
`fanout.orchestrator._prompts`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .backend import Completion, Example, Prompt, PromptStyle
from .errors import OutputInvalid
from .task import SubTask

__all__ = [
    "NOT_FOUND",
    "AgentContext",
    "AgentFunction",
    "Finding",
    "ModelAccess",
    "SubAgentOutput",
    "SubTask",
    "answer_task",
    "answer_with_json",
    "cooperative",
    "graph_sub_agent",
    "is_cooperative",
    "is_not_found",
    "parse_evidence_answer",
    "parse_qa_output",
    "structured_answerer",
    "task_prompt",
    "validate_output",
]


# -- the default sub-agent's prompts and how its replies are read ----------------------------

NOT_FOUND = "not found"
"""What the default sub-agent answers when its document does not hold the answer."""

_QA_INSTRUCTION = (
    "Answer the question using only the document, then quote the sentence of the document that "
    f'gives the answer. If the document does not contain the answer, answer "{NOT_FOUND}".'
)
# Every example shows the evidence line, the abstention too: a small base model copies the layout
# it sees in all examples. (Measured on the embedded 270M model with the supplier notes: with the
# quote asked for first it wrote the name in the quote and then "not found"; answer-first kept
# both right, and the quotes it altered are caught by the grounding check.)
_QA_EXAMPLES = (
    Example(
        context="The Lisbon office opened in 2019. It employs 40 people and sells garden tools.",
        task="How many people does the Lisbon office employ?",
        answer="40 people\nEvidence: It employs 40 people and sells garden tools.",
    ),
    Example(
        context="Our cafeteria serves lunch from noon until 2 pm on weekdays.",
        task="Who founded the company?",
        answer=f"{NOT_FOUND}\nEvidence: none",
    ),
    Example(
        context="The old bridge was painted green in 1998 by the city council.",
        task="What colour is the bridge?",
        answer="green\nEvidence: The old bridge was painted green in 1998 by the city council.",
    ),
)
# Chat models get one plain user message, the request last: on SmolLM2-135M-Instruct a system
# prompt with few-shot turns answered 1 of 4 shipping memos right, one plain message 4 of 4. The
# wording was measured on the Qwen2.5-Coder models (evals/results/ladder/prompt-probe.md): "answer
# in a few words ... or reply not found" abstained on gold passages and on a 75-pair KV object
# whose key was there (0.5B: 8 of 9 KV calls); asking to copy the line first never abstained on a
# distractor; asking first whether a line answers abstained on 8 of 10 gold NQ passages on the
# 1.5B model. Answer first, then the line it came from, with "not found" only when the document
# says nothing that answers: 1.5B answered 7 of 10 gold passages and abstained on 8 of 10
# distractors; 0.5B answered 2 of 4, abstained on 8 of 36 distractors and found 1 of 2 KV values.
# A request put before the document lost the KV case: small models follow what they read last.
_QA_CHAT_REQUEST = (
    "Answer the question in a few words using the document, then copy the line it comes from, "
    "as:\nAnswer: <the answer>\nEvidence: <the line>\n"
    f"If the document says nothing that answers it, reply exactly: {NOT_FOUND}"
)
_QA_JSON_INSTRUCTION = (
    "Answer the question using only the document. Reply with one JSON object: found (false when "
    "the document does not answer the question), answer (a few words), evidence (the sentence of "
    "the document that gives the answer, copied exactly)."
)
# How models say the document does not answer: the one definition of "not found". A refusal
# phrase counts only next to a word for the source, so "the policy does not cover floods" is an
# answer while "the document does not mention it" is not.
_ABSTAIN_EXACT = frozenset({NOT_FOUND, "none", "no answer", "unknown", "n/a", "not stated"})
_REFUSALS = (
    "does not answer", "doesn't answer", "does not contain", "doesn't contain",
    "does not mention", "doesn't mention", "does not say", "doesn't say", "does not provide",
    "doesn't provide", "not mentioned", "not stated", "no information", "not provided",
    "cannot be determined", "can't be determined",
)  # fmt: skip
_SOURCE_WORDS = ("document", "text", "passage", "context", "question", "provided")


def is_not_found(text: str | None) -> bool:
    """Whether a model's answer says its document does not answer the question."""
    if text is None:
        return True
    norm = " ".join(text.lower().replace("\u2019", "'").strip(" .\"'").split())
    if not norm or norm in _ABSTAIN_EXACT or norm.startswith(NOT_FOUND):
        return True
    return any(r in norm for r in _REFUSALS) and any(w in norm for w in _SOURCE_WORDS)


_ANSWER_THEN_EVIDENCE = re.compile(
    r"^\s*answer\s*:\s*(?P<answer>[^\n]*)\n\s*evidence\s*:\s*(?P<quote>.*)$", re.I | re.S
)
_EVIDENCE_THEN_ANSWER = re.compile(
    r"^\s*(?:evidence\s*:\s*(?P<quote>.*?)\s*)?\banswer\s*:\s*(?P<answer>.*)$", re.I | re.S
)
_WRAPPING = " \t\"'`“”‘’"


def parse_evidence_answer(text: str) -> tuple[str, str | None]:
    """(answer, quote) from a chat QA reply: "Answer:" and "Evidence:" lines, in either order.

    Models asked for one order sometimes write the other. A reply without an answer line is all answer ("not found", or a model that skipped the
    layout); an answer runs to the end of its line.
    """
    first = _ANSWER_THEN_EVIDENCE.match(text)
    if first is not None:
        answer = first.group("answer").strip().strip(_WRAPPING)
        quote = first.group("quote").strip()
        if is_not_found(answer) or quote.lower().strip(" .") in ("none", "", NOT_FOUND):
            return answer, None
        return answer, quote
    match = _EVIDENCE_THEN_ANSWER.match(text)
    if match is None:
        return text.strip(), None
    answer = (match.group("answer").strip().splitlines() or [""])[0].strip(_WRAPPING)
    quote = (
        match.group("quote") or ""
    ).strip()  # grounding strips its edges; a JSON line keeps them
    if quote.lower().strip(" .") in ("none", ""):
        return answer, None
    return answer, quote


def parse_qa_output(text: str) -> tuple[str, str | None]:
    """(answer, quote) from a completion of the QA prompt: the answer, then "Evidence: <quote>".

    A model that skipped the evidence line gave no quote; "none" is no quote either.
    """
    answer, _, quote = text.partition("\nEvidence:")
    quote = quote.strip()
    if quote.lower().strip(" .") in ("none", ""):
        return answer.strip(), None
    return answer.strip(), quote


# Documents are numbered, never named: a file name may hold any character, and "[3]" costs two
# or three tokens where a name costs ten (see `fanout.orchestrator._aliases`).
_MONOLITHIC_INSTRUCTION = (
    "Answer the question using only the documents below. Each document starts with its number in "
    "brackets. Cite the numbers of the documents you used in brackets."
)
_MONOLITHIC_EXAMPLES = (
    Example(
        context="[1]\nThe meeting moved to Tuesday.\n\n[2]\nRoom 4B is booked.",
        task="When is the meeting?",
        answer="Tuesday [1]",
    ),
)


def task_prompt(
    task: SubTask,
    *,
    style: PromptStyle = "completion",
    json_schema: dict[str, Any] | None = None,
) -> Prompt:
    """The default prompt for a sub-task: extractive QA over one document, or over all of them.

    Completion (base) models get few-shot examples that answer, then quote; chat models get
    one plain message; with a JSON schema the layout is the schema's, so examples are dropped.
    """
    if task.document_id is None:
        return Prompt(
            instruction=_MONOLITHIC_INSTRUCTION,
            context=task.context,
            task=task.task,
            examples=() if json_schema is not None else _MONOLITHIC_EXAMPLES,
            context_label="Documents",
        )
    if json_schema is not None:
        return Prompt(instruction=_QA_JSON_INSTRUCTION, context=task.context, task=task.task)
    if style == "chat":
        return Prompt(
            instruction="", context=task.context, task=task.task, closing=_QA_CHAT_REQUEST
        )
    return Prompt(
        instruction=_QA_INSTRUCTION,
        context=task.context,
        task=task.task,
        examples=_QA_EXAMPLES,
    )


# -- sub-agents ---------------------------------------------------------------------------


class ModelAccess(Protocol):
    """The model, as a sub-agent may use it: every call is bounded, retried, timed and counted."""

    @property
    def prompt_style(self) -> PromptStyle:
        """How the backend renders prompts (completion for base models)."""
        ...

    @property
    def context_window(self) -> int | None:
        """Tokens the model attends to, or None when unknown."""
        ...

    @property
    def max_tokens(self) -> int:
        """The completion budget a call gets when it names none (the run's policy)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes for this backend."""
        ...

    async def complete(
        self,
        prompt: Prompt,
        *,
        max_tokens: int | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        """One model call under the coordinator's limits."""
        ...


class AgentContext(Protocol):
    """What a sub-agent reads of its context: its task, its model, the run and your deps.

    The runtime hands every sub-agent a `fanout.orchestrator.RunContext`, which has all of these.
    """

    @property
    def run_id(self) -> str:
        """The run this sub-agent belongs to."""
        ...

    @property
    def task(self) -> SubTask:
        """Its one unit of work: one task over one document (or chunk)."""
        ...

    @property
    def model(self) -> ModelAccess:
        """The model under the run's limits."""
        ...

    @property
    def deps(self) -> Any:
        """The application's own dependencies."""
        ...


M = TypeVar("M", bound=BaseModel)
A = TypeVar("A", bound=Callable[..., Awaitable[Any]])

_COOPERATIVE = "__fanout_cooperative__"


def cooperative(sub_agent: A) -> A:
    """Mark `sub_agent` as never blocking its event loop, so it runs on the coordinator's loop.

    Any other sub-agent runs in a thread and on a loop of its own, where blocking code cannot
    stall the run (`fanout.orchestrator._subagents`). Mark only a sub-agent whose every wait is an
    ``await`` (no ``time.sleep``, no synchronous I/O, no long computation): one that blocks while
    marked stalls every other sub-agent, its own deadline and Ctrl-C until it yields. Mark one
    that must share the caller's asyncio objects (a lock, a client bound to that loop).
    """
    setattr(sub_agent, _COOPERATIVE, True)
    return sub_agent


def is_cooperative(sub_agent: object) -> bool:
    """Whether `sub_agent` was marked with `cooperative` (fanout's own sub-agents are)."""
    return bool(getattr(sub_agent, _COOPERATIVE, False))


class Finding(BaseModel):
    """What a sub-agent found in its document: the structured form of found / not found.

    Default sub-agents return one; a user's sub-agent may too, or return plain text (then "not
    found"-style answers count as abstentions, see `fanout.orchestrator._prompts.is_not_found`).
    """

    model_config = ConfigDict(frozen=True)

    found: bool
    """False when the document does not answer the task."""
    answer: str = ""
    """The answer, in a few words."""
    evidence: str = ""
    """The sentence of the document that gives the answer, copied exactly."""


SubAgentOutput: TypeAlias = str | BaseModel | dict[str, Any]
AgentFunction: TypeAlias = Callable[[AgentContext], Awaitable[SubAgentOutput]]
"""fanout's own sub-agents, which read no more of their context than `AgentContext`."""


@cooperative
async def answer_task(ctx: AgentContext) -> SubAgentOutput:
    """The default sub-agent: one call answering the task from the context, with evidence.

    Over one document the answer is a `Finding`; over every document (the monolithic baseline) it
    is the model's text, citations and all.
    """
    task, llm = ctx.task, ctx.model
    completion = await llm.complete(task_prompt(task, style=llm.prompt_style))
    if task.document_id is None:
        return completion.text
    if llm.prompt_style == "chat":
        answer, quote = parse_evidence_answer(completion.text)
    else:
        answer, quote = parse_qa_output(completion.text)
    if is_not_found(answer):
        return Finding(found=False)
    return Finding(found=True, answer=answer, evidence=quote or "")


@cooperative
async def answer_with_json(ctx: AgentContext) -> SubAgentOutput:
    """The default sub-agent, structured: the model fills a `Finding` under a JSON schema.

    The schema travels with the call (a grammar on llama.cpp, response_format on servers). Use it
    with models that follow JSON instructions; the small embedded base model answers better in text.
    """
    task, llm = ctx.task, ctx.model
    if task.document_id is None:
        return await answer_task(ctx)
    schema = Finding.model_json_schema()
    prompt = task_prompt(task, style=llm.prompt_style, json_schema=schema)
    completion = await llm.complete(prompt, max_tokens=256, json_schema=schema)
    finding = validate_output(Finding, completion.text)
    if finding.found and is_not_found(finding.answer):
        return Finding(found=False)
    return finding


def structured_answerer(schema: type[BaseModel]) -> AgentFunction:
    """A sub-agent whose answer must be an instance of `schema`.

    The schema travels with the call (a grammar on llama.cpp, response_format on OpenAI-compatible
    servers) and the output is validated; invalid JSON fails this sub-agent with `OutputInvalid`.
    """
    json_schema = schema.model_json_schema()

    @cooperative
    async def answer(ctx: AgentContext) -> SubAgentOutput:
        llm = ctx.model
        prompt = task_prompt(ctx.task, style=llm.prompt_style, json_schema=json_schema)
        completion = await llm.complete(prompt, max_tokens=256, json_schema=json_schema)
        return validate_output(schema, completion.text)

    return answer


def validate_output(schema: type[M], text: str) -> M:
    """Parse `text` as `schema`, raising `OutputInvalid` with a one-line reason."""
    try:
        return schema.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "output"
        raise OutputInvalid(
            f"output is not a valid {schema.__name__}: {where}: {first['msg']}"
        ) from None


def graph_sub_agent(graph: Any, *, output_key: str = "output") -> AgentFunction:
    """Run a compiled LangGraph graph once per sub-task, as a sub-agent.

    The graph receives ``{"task": SubTask}`` as input and the sub-agent's `RunContext` as its
    runtime context (build it with ``context_schema=RunContext``; a node reads
    ``runtime.context.model``); it must leave its answer under `output_key` in its final state.
    Like any user sub-agent it runs in a thread of its own unless wrapped in `cooperative`.
    """

    async def run_graph(ctx: AgentContext) -> SubAgentOutput:
        state = await graph.ainvoke({"task": ctx.task}, context=ctx)
        if output_key not in state:
            raise KeyError(f"sub-agent graph ended without '{output_key}' in its state")
        output: SubAgentOutput = state[output_key]
        return output

    return run_graph
