"""A user-defined agent graph, built from fanout's public parts only.

- Each sub-agent is a LangGraph graph of two nodes, extract then verify. It reads its model and its
  one sub-task from the run's `RunContext` (LangGraph's ``context_schema``), so every call goes
  through the coordinator's limits, retries, accounting and hooks.
- A custom rank stage keeps only findings whose quote is in their document, then defers to
  fanout's own ranking.
- Hooks count the model calls as they happen.
- The coordinator's graph is then a node of the application's own graph, which reads ``result``.

Run it:  .venv/bin/python examples/custom_graph.py
"""

from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from fanout import (
    Coordinator,
    DocumentAnswer,
    Example,
    Finding,
    LlamaCppBackend,
    Prompt,
    Request,
    RunContext,
    RunHooks,
    RunResult,
    Stages,
    SubTask,
    graph_sub_agent,
    load_documents,
    rank_findings,
)

EXTRACT_EXAMPLES = (
    Example(
        context="The bridge was painted green in 1998.", task="What colour is it?", answer="green"
    ),
    Example(
        context="Lunch is served at noon.", task="Who founded the company?", answer="not found"
    ),
)
VERIFY_EXAMPLES = (
    Example(context="The bridge is green.", task="Is 'green' stated in the text?", answer="yes"),
    Example(context="The bridge is green.", task="Is 'red' stated in the text?", answer="no"),
)


class ExtractVerify(TypedDict, total=False):
    task: SubTask
    draft: str
    output: Finding


async def extract(state: ExtractVerify, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """First call: answer from the document in a few words."""
    task = state["task"]
    prompt = Prompt(
        instruction="Answer from the text in a few words, or say not found.",
        context=task.context,
        task=task.task,
        examples=EXTRACT_EXAMPLES,
    )
    completion = await runtime.context.model.complete(prompt, max_tokens=24)
    return {"draft": completion.text.strip()}


async def verify(state: ExtractVerify, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Second call: check the draft is stated by the same document."""
    task, draft = state["task"], state["draft"]
    if not draft or draft.lower().startswith("not found"):
        return {"output": Finding(found=False)}
    prompt = Prompt(
        instruction="Answer yes or no.",
        context=task.context,
        task=f"Is '{draft}' stated in the text?",
        examples=VERIFY_EXAMPLES,
    )
    verdict = (await runtime.context.model.complete(prompt, max_tokens=3)).text.lower()
    supported = verdict.startswith("yes") or draft in task.context
    return {"output": Finding(found=supported, answer=draft if supported else "")}


def build_sub_agent_graph() -> Any:
    """extract -> verify, compiled once and run once per sub-task."""
    graph = StateGraph(ExtractVerify, context_schema=RunContext)
    graph.add_node("extract", extract)
    graph.add_node("verify", verify)
    graph.add_edge(START, "extract")
    graph.add_edge("extract", "verify")
    graph.add_edge("verify", END)
    return graph.compile()


def grounded_first(ctx: RunContext, answers: list[DocumentAnswer]) -> list[DocumentAnswer]:
    """A rank stage: a finding whose quote is not in its document never reaches synthesis."""
    ranked = rank_findings(ctx, answers)
    return [
        a.model_copy(update={"selected": a.selected and a.grounded is not False}) for a in ranked
    ]


class CallCounter(RunHooks):
    """Counts model calls as the runtime makes them."""

    def __init__(self) -> None:
        self.calls = 0

    async def on_call_end(self, ctx: RunContext, request: Any, outcome: Any) -> None:
        self.calls += 1


class App(TypedDict, total=False):
    request: Request
    result: RunResult
    summary: str


def main() -> None:
    """Ask the example supplier documents a question through the custom graph, inside an app."""
    docs = load_documents([str(Path(__file__).parent / "suppliers")])
    counter = CallCounter()
    coordinator = Coordinator(
        LlamaCppBackend.default(),
        stages=Stages(sub_agent=graph_sub_agent(build_sub_agent_graph()), rank=grounded_first),
        synthesis="collect",
        hooks=counter,
    )

    def summarize(state: App) -> dict[str, str]:
        result = state["result"]
        return {"summary": f"{result.usage.calls} calls, {result.usage.total_tokens} tokens"}

    app = StateGraph(App)
    app.add_node("fanout", coordinator.graph)  # declared keys in: request; out: result
    app.add_node("summarize", summarize)
    app.add_edge(START, "fanout")
    app.add_edge("fanout", "summarize")
    app.add_edge("summarize", END)
    final = app.compile().invoke(
        {"request": Request(documents=docs, question="Who is the account manager?")}
    )
    print(final["result"].answer)
    print(f"{final['summary']} (hooks counted {counter.calls} calls)")
    coordinator.close()


if __name__ == "__main__":
    main()
