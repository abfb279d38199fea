"""A user-defined agent graph: each sub-agent is a LangGraph graph that extracts, then verifies.

The coordinator still does the fan-out, concurrency limits, retries, accounting and failure
reporting; the graph only decides what one sub-agent does with its own document.

Run it:  .venv/bin/python examples/custom_graph.py
"""

from pathlib import Path
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from fanout.agents import Example, LlamaCppBackend, Prompt
from fanout.orchestrator import Coordinator, Request, SubTask, graph_sub_agent, load_documents
from fanout.orchestrator.prompts import task_prompt

VERIFY_EXAMPLES = (
    Example(context="The bridge is green.", task="Is 'green' stated in the text?", answer="yes"),
    Example(context="The bridge is green.", task="Is 'red' stated in the text?", answer="no"),
)


class ExtractVerify(TypedDict, total=False):
    task: SubTask
    draft: str
    verdict: str
    output: str


async def extract(state: ExtractVerify, config: RunnableConfig) -> dict[str, Any]:
    """First call: answer from the document (the default few-shot QA prompt)."""
    llm = config["configurable"]["llm"]
    completion = await llm.complete(task_prompt(state["task"]))
    return {"draft": completion.text}


async def verify(state: ExtractVerify, config: RunnableConfig) -> dict[str, Any]:
    """Second call: check the draft is literally supported by the same document."""
    llm = config["configurable"]["llm"]
    prompt = Prompt(
        instruction="Answer yes or no.",
        context=state["task"].context,
        task=f"Is '{state['draft']}' stated in the text?",
        examples=VERIFY_EXAMPLES,
    )
    verdict = (await llm.complete(prompt, max_tokens=3)).text.lower()
    supported = verdict.startswith("yes") or state["draft"] in state["task"].context
    return {"verdict": verdict, "output": state["draft"] if supported else "not found"}


def build_sub_agent_graph() -> Any:
    """extract -> verify, compiled once and run once per sub-task."""
    graph = StateGraph(ExtractVerify)
    graph.add_node("extract", extract)
    graph.add_node("verify", verify)
    graph.add_edge(START, "extract")
    graph.add_edge("extract", "verify")
    graph.add_edge("verify", END)
    return graph.compile()


def main() -> None:
    """Ask the example supplier documents a question through extract-then-verify sub-agents."""
    docs = load_documents([str(Path(__file__).parent / "suppliers")])
    coordinator = Coordinator(
        LlamaCppBackend.default(),
        sub_agent=graph_sub_agent(build_sub_agent_graph()),
        synthesis="collect",
    )
    result = coordinator.run(Request(documents=tuple(docs), question="Who is the account manager?"))
    print(result.answer)
    print(f"{result.usage.calls} calls, {result.usage.total_tokens} tokens")


if __name__ == "__main__":
    main()
