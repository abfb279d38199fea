"""What a sub-agent is: a coroutine given one `SubTask` and a handle to the model, and nothing else.

A sub-agent sees only its own document (or chunk) and its own task. It reaches the model through
`ModelAccess`, which the coordinator implements with its concurrency bound, timeouts, retries and
accounting, so a user-written sub-agent (a function, or a whole LangGraph graph) gets them for free.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias

from pydantic import BaseModel, ValidationError

from fanout.agents.backend import Completion, Prompt, PromptStyle
from fanout.agents.errors import OutputInvalid

from .prompts import task_prompt
from .task import SubTask

__all__ = [
    "ModelAccess",
    "SubAgent",
    "SubAgentOutput",
    "SubTask",
    "answer_task",
    "graph_sub_agent",
    "structured_answerer",
    "validate_output",
]


class ModelAccess(Protocol):
    """The model, as a sub-agent may use it: every call is bounded, retried, timed and counted."""

    @property
    def prompt_style(self) -> PromptStyle:
        """How the backend renders prompts (completion for base models)."""
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


SubAgentOutput: TypeAlias = str | BaseModel | dict[str, Any]
SubAgent: TypeAlias = Callable[[SubTask, ModelAccess], Awaitable[SubAgentOutput]]


async def answer_task(task: SubTask, llm: ModelAccess) -> str:
    """The default sub-agent: one call answering the task from the context."""
    completion = await llm.complete(task_prompt(task))
    return completion.text


def structured_answerer(schema: type[BaseModel]) -> SubAgent:
    """A sub-agent whose answer must be an instance of `schema`.

    The schema travels with the call (a grammar on llama.cpp, response_format on OpenAI-compatible
    servers) and the output is validated; invalid JSON fails this sub-agent with `OutputInvalid`.
    """
    json_schema = schema.model_json_schema()

    async def answer(task: SubTask, llm: ModelAccess) -> SubAgentOutput:
        prompt = task_prompt(task, json_schema=json_schema)
        completion = await llm.complete(prompt, max_tokens=256, json_schema=json_schema)
        return validate_output(schema, completion.text)

    return answer


def validate_output(schema: type[BaseModel], text: str) -> BaseModel:
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
    """

    async def run_graph(task: SubTask, llm: ModelAccess) -> SubAgentOutput:
        state = await graph.ainvoke({"task": task}, config={"configurable": {"llm": llm}})
        if output_key not in state:
            raise KeyError(f"sub-agent graph ended without '{output_key}' in its state")
        output: SubAgentOutput = state[output_key]
        return output

    return run_graph
