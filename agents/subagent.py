"""What a sub-agent is, and fanout's own: a coroutine given a context holding one `SubTask`.

A sub-agent sees only its own document (or chunk) and its own task (``ctx.task``). It reaches the
model through ``ctx.model`` (a `ModelAccess`), which the coordinator implements with its concurrency
bound, timeouts, retries, accounting and hooks, so a user-written sub-agent (a function, or a whole
LangGraph graph) gets them for free. The context it receives is the run's
`fanout.orchestrator.RunContext`; this module asks only for what a sub-agent reads of it
(`AgentContext`), so the sub-agent lives with the models it calls and knows nothing of the
coordinator above it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .backend import Completion, Prompt, PromptStyle
from .errors import OutputInvalid
from .qa_prompts import is_not_found, parse_evidence_answer, parse_qa_output, task_prompt
from .task import SubTask

__all__ = [
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
    "structured_answerer",
    "validate_output",
]


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
    found"-style answers count as abstentions, see `fanout.orchestrator.prompts.is_not_found`).
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
