"""What a sub-agent is: a coroutine given one `SubTask` and a handle to the model, and nothing else.

A sub-agent sees only its own document (or chunk) and its own task. It reaches the model through
`ModelAccess`, which the coordinator implements with its concurrency bound, timeouts, retries and
accounting, so a user-written sub-agent (a function, or a whole LangGraph graph) gets them for free.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict, ValidationError

from .backend import Completion, Example, Prompt, PromptStyle
from .errors import OutputInvalid

__all__ = [
    "NOT_FOUND",
    "ModelAccess",
    "SubAgent",
    "SubAgentOutput",
    "SubTask",
    "answer_task",
    "graph_sub_agent",
    "structured_answerer",
    "task_prompt",
    "validate_output",
]

NOT_FOUND = "not found"
"""What the default sub-agent answers when its document does not hold the answer."""


class SubTask(BaseModel):
    """One unit of isolated work: one task over one document or one chunk of it."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Stable id (document, task, chunk): results are keyed and checkpointed under it."""
    document_id: str | None
    """The document this context comes from; None when the context holds every document."""
    chunk_index: int = 0
    """Which chunk of the document."""
    n_chunks: int = 1
    """How many chunks the document was cut into."""
    start: int = 0
    """Offset of this context's first character in the document."""
    end: int = 0
    """Offset one past its last character."""
    task_index: int = 0
    """Index into the request's task list."""
    task: str
    """The question or instruction."""
    context: str
    """The only material this sub-agent may read."""


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

_QA_INSTRUCTION = (
    "Answer the question using only the document. Give a short answer. "
    f'If the document does not contain the answer, answer "{NOT_FOUND}".'
)
_QA_EXAMPLES = (
    Example(
        context="The Lisbon office opened in 2019. It employs 40 people and sells garden tools.",
        task="How many people does the Lisbon office employ?",
        answer="40 people",
    ),
    Example(
        context="Our cafeteria serves lunch from noon until 2 pm on weekdays.",
        task="Who founded the company?",
        answer=NOT_FOUND,
    ),
    Example(
        context="The old bridge was painted green in 1998 by the city council.",
        task="What colour is the bridge?",
        answer="green",
    ),
)
_MONOLITHIC_INSTRUCTION = (
    "Answer the question using only the documents below. Each document starts with its name in "
    "brackets. Cite the names of the documents you used in brackets."
)
_MONOLITHIC_EXAMPLES = (
    Example(
        context="[memo1.txt]\nThe meeting moved to Tuesday.\n\n[memo2.txt]\nRoom 4B is booked.",
        task="When is the meeting?",
        answer="Tuesday [memo1.txt]",
    ),
)


def task_prompt(task: SubTask, *, json_schema: dict[str, Any] | None = None) -> Prompt:
    """The default prompt for a sub-task: few-shot extractive QA over one document, or over all."""
    examples: tuple[Example, ...]
    if task.document_id is None:
        instruction, examples, label = _MONOLITHIC_INSTRUCTION, _MONOLITHIC_EXAMPLES, "Documents"
    else:
        instruction, examples, label = _QA_INSTRUCTION, _QA_EXAMPLES, "Document"
    if json_schema is not None:
        # Worked examples answer in prose; with a schema the answer must be JSON, so drop them.
        instruction = f"{instruction} Answer with one JSON object only."
        examples = ()
    return Prompt(
        instruction=instruction,
        context=task.context,
        task=task.task,
        examples=examples,
        context_label=label,
    )


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
