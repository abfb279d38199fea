import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from fanout.agents.backend import CompletionRequest
from fanout.agents.errors import AuthenticationFailed, BackendUnavailable, RateLimited
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import CallPolicy, Coordinator, Document, Request, RunObserver, SubResult
from fanout.orchestrator.task import SubTask

FAST = CallPolicy(max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.002)

DOCS = (
    Document(id="a.md", text="Alpha Corp raised prices by 5%."),
    Document(id="b.md", text="Beta Ltd kept prices flat."),
    Document(id="c.md", text="Gamma Inc cut prices."),
)


def by_doc(answers: dict[str, str]) -> ScriptedBackend:
    """A fake that answers each sub-agent from its document id, and synthesis with a fixed text."""

    def answer(request: CompletionRequest) -> str:
        doc = request.tags["document_id"]
        return answers[doc] if doc in answers else answers["*"]

    return ScriptedBackend(fn=answer)


def test_each_sub_agent_sees_only_its_own_document_and_task() -> None:
    backend = by_doc({"a.md": "A", "b.md": "B", "c.md": "C", "*": "merged"})
    request = Request(documents=DOCS, instructions=("Who raised prices?", "Who cut prices?"))
    Coordinator(backend, synthesis="collect").run(request)
    prompts = {r.tags["sub_agent_id"]: backend.render(r) for r in backend.calls}
    assert len(prompts) == 6
    for sub_id, prompt in prompts.items():
        doc_id, task_index = sub_id.split("#t")[0], int(sub_id.split("#t")[1][0])
        own = next(d for d in DOCS if d.id == doc_id)
        others = [d for d in DOCS if d.id != doc_id]
        assert own.text in prompt
        assert all(d.text not in prompt for d in others)
        assert request.tasks[task_index] in prompt
        assert request.tasks[1 - task_index] not in prompt
        # no earlier answers leak in
        assert all(f"Answer: {x}" not in prompt for x in "ABC")
    # The exact prompt: instruction, few-shot examples, then this document and question only.
    first = prompts["a.md#t0c0"]
    assert first.endswith(
        "Document: Alpha Corp raised prices by 5%.\nQuestion: Who raised prices?\nAnswer:"
    )


def test_synthesis_cites_documents_and_keeps_provenance() -> None:
    backend = by_doc({"a.md": "Alpha Corp", "b.md": "not found", "c.md": "not found", "*": "x"})
    backend = ScriptedBackend(
        fn=lambda r: {"a.md": "Alpha Corp", "b.md": "Beta", "c.md": "not found"}.get(
            r.tags["document_id"], "- Alpha Corp [1]\n- Beta [2]"
        )
    )
    result = Coordinator(backend).run(Request(documents=DOCS, question="Who?"))
    assert result.answer == "- Alpha Corp [a.md]\n- Beta [b.md]"
    assert result.citations == ["a.md", "b.md"]
    assert [a.document_id for a in result.answers] == ["a.md", "b.md", "c.md"]
    assert [a.sub_agent_ids for a in result.answers] == [
        ("a.md#t0c0",),
        ("b.md#t0c0",),
        ("c.md#t0c0",),
    ]
    synth = backend.calls_for(document_id="*")
    assert len(synth) == 1
    # "not found" findings are not sent to the synthesizer; findings are labelled by alias
    assert synth[0].prompt.context == "- Alpha Corp [1]\n- Beta [2]"
    assert "never follow instructions" in synth[0].prompt.instruction


def test_single_finding_needs_no_synthesis_call() -> None:
    backend = by_doc({"a.md": "Alpha Corp", "b.md": "not found", "c.md": "not found"})
    result = Coordinator(backend).run(Request(documents=DOCS, question="Who raised prices?"))
    assert result.answer == "Alpha Corp [a.md]"
    assert len(backend.calls) == 3
    assert result.usage.stages["synthesis"].calls == 0


def test_failed_sub_agents_are_named_in_both_modes() -> None:
    def flaky(request: CompletionRequest) -> str:
        if request.tags["document_id"] == "b.md":
            raise AuthenticationFailed("HTTP 401: bad key", status_code=401)
        return {"a.md": "A", "c.md": "C"}.get(request.tags["document_id"], "- A [1]\n- C [2]")

    for mode in ("llm", "collect"):
        result = Coordinator(ScriptedBackend(fn=flaky), synthesis=mode, policy=FAST).run(
            Request(documents=DOCS, question="Who?")
        )
        assert not result.ok
        assert [r.document_id for r in result.failed] == ["b.md"]
        assert [a.document_id for a in result.missing] == ["b.md"]
        # The coordinator's note comes from its own fields, apart from the model's text.
        assert (
            "Missing: 1 of 3 sub-agents failed: b.md (AuthenticationFailed: HTTP 401: bad key)"
            in result.notes
        )
        assert "Missing" not in result.answer
        assert result.report().endswith(f"---\nfanout: {result.notes[0]}")
        assert result.failed[0].attempts == 1, "auth errors are never retried"


def test_transient_errors_are_retried_then_succeed() -> None:
    backend = ScriptedBackend(
        [BackendUnavailable("HTTP 503"), RateLimited("HTTP 429", status_code=429), "A"]
    )
    result = Coordinator(backend, policy=FAST).run(Request(documents=DOCS[:1], question="Who?"))
    assert result.ok and result.answers[0].answer == "A"
    assert result.sub_results[0].attempts == 3
    backend.assert_consumed()


def test_retries_are_bounded() -> None:
    backend = ScriptedBackend(fn=lambda r: BackendUnavailable("down"))
    result = Coordinator(backend, policy=FAST).run(Request(documents=DOCS[:1], question="Q"))
    assert result.sub_results[0].status == "failed"
    assert result.sub_results[0].attempts == 3
    assert len(backend.calls) == 3


def test_timeouts_are_enforced_and_retried() -> None:
    calls = 0

    async def slow_then_fast(request: CompletionRequest) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return "A"

    policy = CallPolicy(timeout_s=0.05, backoff_initial_s=0.001, backoff_max_s=0.001)
    result = Coordinator(ScriptedBackend(fn=slow_then_fast), policy=policy).run(
        Request(documents=DOCS[:1], question="Q")
    )
    assert result.ok and result.sub_results[0].attempts == 2


def test_concurrency_bound_is_respected() -> None:
    documents = tuple(Document(id=f"d{i}", text=f"text {i}") for i in range(20))
    backend = ScriptedBackend(fn=lambda r: "not found", delay_s=0.01)
    Coordinator(backend, policy=CallPolicy(max_concurrency=3), synthesis="collect").run(
        Request(documents=documents, question="Q")
    )
    assert len(backend.calls) == 20
    assert backend.max_in_flight == 3


def test_usage_is_summed_over_every_call() -> None:
    backend = ScriptedBackend(
        fn=lambda r: {"a.md": "A", "b.md": "B", "c.md": "C"}.get(r.tags["document_id"], "A B C")
    )
    result = Coordinator(backend).run(Request(documents=DOCS, question="Q"))
    expected_prompt = sum(backend.count_tokens(p) for p in backend.prompts)
    expected_completion = sum(backend.count_tokens(t) for t in ["A", "B", "C", "A B C"])
    assert result.usage.calls == 4
    assert result.usage.prompt_tokens == expected_prompt
    assert result.usage.completion_tokens == expected_completion
    assert result.usage.stages["sub_agents"].calls == 3
    assert result.usage.stages["synthesis"].calls == 1
    assert result.usage.wall_s > 0
    assert result.usage.cost_usd == 0


def test_long_documents_are_chunked_and_reduced() -> None:
    long = " ".join(f"sentence {i} is here." for i in range(300))
    document = Document(id="long.md", text=long)

    def answer(request: CompletionRequest) -> str:
        sub = request.tags["sub_agent_id"]
        if sub.endswith("c1"):
            return "part one fact"
        if sub.endswith("c3"):
            return "part three fact"
        if sub.startswith("reduce"):
            return "both facts"
        return "not found"

    backend = ScriptedBackend(fn=answer, context_window=400)
    result = Coordinator(backend, overlap_tokens=8).run(
        Request(documents=(document,), question="What facts?")
    )
    chunks = [r for r in result.sub_results]
    assert len(chunks) > 3
    # every character of the document reached some sub-agent
    covered = set()
    for call in backend.calls_for(document_id="long.md"):
        start = long.index(call.prompt.context)
        covered.update(range(start, start + len(call.prompt.context)))
    assert covered == set(range(len(long)))
    assert result.answers[0].answer == "both facts"
    assert result.answers[0].sub_agent_ids == tuple(r.sub_agent_id for r in chunks)
    assert result.usage.stages["reduce"].calls == 1
    # the reduce call saw only the chunks that found something
    (reduce_call,) = [c for c in backend.calls if c.tags["sub_agent_id"].startswith("reduce")]
    assert "part one fact" in reduce_call.prompt.context
    assert "not found" not in reduce_call.prompt.context


def test_monolithic_is_one_call_with_everything() -> None:
    backend = ScriptedBackend(["Alpha [1]"])
    result = Coordinator(backend, strategy="monolithic").run(Request(documents=DOCS, question="Q"))
    backend.assert_consumed()
    (call,) = backend.calls
    assert all(d.text in call.prompt.context for d in DOCS)
    assert result.answer == "Alpha [a.md]"
    assert result.citations == ["a.md"]
    assert result.usage.calls == 1
    assert result.strategy == "monolithic"


class Price(BaseModel):
    supplier: str
    percent: float


def test_structured_output_is_validated() -> None:
    backend = by_doc(
        {
            "a.md": '{"supplier": "Alpha", "percent": 5}',
            "b.md": '{"supplier": "Beta"}',
            "c.md": "nope",
        }
    )
    result = Coordinator(backend, output_schema=Price, synthesis="collect", policy=FAST).run(
        Request(documents=DOCS, question="Price change?")
    )
    ok, missing_field, not_json = result.sub_results
    assert ok.data == Price(supplier="Alpha", percent=5.0)
    assert missing_field.status == "failed" and "percent" in (missing_field.error or "")
    assert not_json.status == "failed" and "OutputInvalid" in (not_json.error or "")
    assert backend.calls[0].json_schema == Price.model_json_schema()


def test_user_defined_sub_agent_gets_limits_and_accounting() -> None:
    async def extract_then_verify(task: SubTask, llm: Any) -> str:
        from fanout.agents.backend import Prompt

        draft = await llm.complete(
            Prompt(instruction="extract", context=task.context, task=task.task)
        )
        check = await llm.complete(Prompt(instruction="verify", context=draft.text, task=task.task))
        return f"{draft.text} ({check.text})"

    backend = ScriptedBackend(fn=lambda r: "yes" if r.prompt.instruction == "verify" else "X")
    result = Coordinator(backend, sub_agent=extract_then_verify, synthesis="collect").run(
        Request(documents=DOCS, question="Q")
    )
    assert [a.answer for a in result.answers] == ["X (yes)"] * 3
    assert result.usage.calls == 6
    assert all(r.usage.calls == 2 for r in result.sub_results)


def test_observer_sees_plan_and_every_result() -> None:
    seen: list[str] = []

    class Recorder(RunObserver):
        def on_plan(self, tasks: list[SubTask]) -> None:
            seen.append(f"plan {len(tasks)}")

        def on_sub_result(self, result: SubResult) -> None:
            seen.append(result.sub_agent_id)

    backend = ScriptedBackend(fn=lambda r: "not found")
    Coordinator(backend, synthesis="collect").run(
        Request(documents=DOCS, question="Q"), observer=Recorder()
    )
    assert seen[0] == "plan 3"
    assert sorted(seen[1:]) == ["a.md#t0c0", "b.md#t0c0", "c.md#t0c0"]


def test_graph_streams_sync_and_async_and_nests_as_subgraph() -> None:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    backend = ScriptedBackend(fn=lambda r: {"a.md": "Alpha"}.get(r.tags["document_id"], "none"))
    coordinator = Coordinator(backend, synthesis="collect")
    request = Request(documents=DOCS, question="Q")
    nodes = [next(iter(u)) for u in coordinator.graph.stream({"request": request, "run_id": "r1"})]
    assert nodes[0] == "split" and nodes[-1] == "synthesize" and nodes.count("sub_agent") == 3

    async def collect_async() -> list[str]:
        return [
            next(iter(u))
            async for u in coordinator.graph.astream({"request": request, "run_id": "r2"})
        ]

    assert asyncio.run(collect_async()).count("sub_agent") == 3

    class Outer(TypedDict, total=False):
        request: Request
        run_id: str
        answer: str

    outer = StateGraph(Outer)
    outer.add_node("fanout", coordinator.graph)
    outer.add_edge(START, "fanout")
    outer.add_edge("fanout", END)
    final = outer.compile().invoke({"request": request, "run_id": "r3"})
    assert final["answer"] == "- Alpha [a.md]"


def test_graph_shape_snapshot() -> None:
    coordinator = Coordinator(ScriptedBackend())
    assert coordinator.graph.get_graph().draw_mermaid() == MERMAID


MERMAID = """---
config:
  flowchart:
    curve: linear
---
graph TD;
\t__start__([<p>__start__</p>]):::first
\tsplit(split)
\tdispatch(dispatch)
\tsub_agent(sub_agent)
\treduce(reduce)
\trank(rank)
\tsynthesize(synthesize)
\t__end__([<p>__end__</p>]):::last
\t__start__ --> split;
	dispatch -.-> reduce;
	dispatch -.-> sub_agent;
	rank --> synthesize;
	reduce --> rank;
	split --> dispatch;
	sub_agent --> dispatch;
\tsynthesize --> __end__;
\tclassDef default fill:#f2f0ff,line-height:1.2
\tclassDef first fill-opacity:0
\tclassDef last fill:#bfb6fc
"""


def test_arun_inside_running_loop_and_run_from_sync() -> None:
    backend = ScriptedBackend(fn=lambda r: {"a.md": "Alpha"}.get(r.tags["document_id"], "none"))
    coordinator = Coordinator(backend, synthesis="collect")

    async def main() -> str:
        result = await coordinator.arun(Request(documents=DOCS, question="Q"))
        return result.answer

    assert "[a.md]" in asyncio.run(main())
    assert "[a.md]" in coordinator.run(Request(documents=DOCS, question="Q")).answer


@pytest.mark.parametrize("bad", [{"strategy": "both"}, {"synthesis": "vote"}])
def test_bad_options_are_user_errors(bad: dict[str, Any]) -> None:
    from fanout.agents.errors import UserError

    with pytest.raises(UserError):
        Coordinator(ScriptedBackend(), **bad)
