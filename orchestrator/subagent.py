"""What a sub-agent is: a coroutine given one `SubTask` and a handle to the model, and nothing else.

A sub-agent sees only its own document (or chunk) and its own task. It reaches the model through
`ModelAccess`, which the coordinator implements with its concurrency bound, timeouts, retries and
accounting, so a user-written sub-agent (a function, or a whole LangGraph graph) gets them for free.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from fanout.agents.backend import Completion, Prompt, PromptStyle
from fanout.agents.errors import OutputInvalid

from .prompts import is_not_found, parse_qa_output, task_prompt
from .task import SubTask

__all__ = [
    "Finding",
    "ModelAccess",
    "SubAgent",
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


M = TypeVar("M", bound=BaseModel)
A = TypeVar("A", bound=Callable[..., Awaitable[Any]])

_COOPERATIVE = "__fanout_cooperative__"


def cooperative(sub_agent: A) -> A:
    """Mark `sub_agent` as never blocking its event loop, so it runs on the coordinator's loop.

    Any other sub-agent runs in a thread and on a loop of its own, where blocking code cannot
    stall the run (`fanout.orchestrator.execution`). Mark only a sub-agent whose every wait is an
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
SubAgent: TypeAlias = Callable[[SubTask, ModelAccess], Awaitable[SubAgentOutput]]


@cooperative
async def answer_task(task: SubTask, llm: ModelAccess) -> SubAgentOutput:
    """The default sub-agent: one call answering the task from the context, with evidence.

    Over one document the answer is a `Finding`; over every document (the monolithic baseline) it
    is the model's text, citations and all.
    """
    completion = await llm.complete(task_prompt(task, style=llm.prompt_style))
    if task.document_id is None:
        return completion.text
    if llm.prompt_style == "chat":
        answer, quote = completion.text.strip(), None
    else:
        answer, quote = parse_qa_output(completion.text)
    if is_not_found(answer):
        return Finding(found=False)
    return Finding(found=True, answer=answer, evidence=quote or "")


@cooperative
async def answer_with_json(task: SubTask, llm: ModelAccess) -> SubAgentOutput:
    """The default sub-agent, structured: the model fills a `Finding` under a JSON schema.

    The schema travels with the call (a grammar on llama.cpp, response_format on servers). Use it
    with models that follow JSON instructions; the small embedded base model answers better in text.
    """
    if task.document_id is None:
        return await answer_task(task, llm)
    schema = Finding.model_json_schema()
    prompt = task_prompt(task, style=llm.prompt_style, json_schema=schema)
    completion = await llm.complete(prompt, max_tokens=256, json_schema=schema)
    finding = validate_output(Finding, completion.text)
    if finding.found and is_not_found(finding.answer):
        return Finding(found=False)
    return finding


def structured_answerer(schema: type[BaseModel]) -> SubAgent:
    """A sub-agent whose answer must be an instance of `schema`.

    The schema travels with the call (a grammar on llama.cpp, response_format on OpenAI-compatible
    servers) and the output is validated; invalid JSON fails this sub-agent with `OutputInvalid`.
    """
    json_schema = schema.model_json_schema()

    @cooperative
    async def answer(task: SubTask, llm: ModelAccess) -> SubAgentOutput:
        prompt = task_prompt(task, style=llm.prompt_style, json_schema=json_schema)
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


def graph_sub_agent(graph: Any, *, output_key: str = "output") -> SubAgent:
    """Run a compiled LangGraph graph once per sub-task, as a sub-agent.

    The graph receives ``{"task": SubTask}`` as input and the coordinator's `ModelAccess` as
    ``config["configurable"]["llm"]``; it must leave its answer under `output_key` in its final state.
    Like any user sub-agent it runs in a thread of its own unless wrapped in `cooperative`.
    """

    async def run_graph(task: SubTask, llm: ModelAccess) -> SubAgentOutput:
        state = await graph.ainvoke({"task": task}, config={"configurable": {"llm": llm}})
        if output_key not in state:
            raise KeyError(f"sub-agent graph ended without '{output_key}' in its state")
        output: SubAgentOutput = state[output_key]
        return output

    return run_graph
