"""The examples/ user-defined graph (extract then verify) runs under the coordinator's machinery."""

import importlib.util
from types import ModuleType

import pytest

from fanout.agents import graph_sub_agent
from fanout.agents.errors import BackendUnavailable
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import CallPolicy, Coordinator, Document, Request, Stages
from tests.conftest import EXAMPLES


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("custom_graph", EXAMPLES / "custom_graph.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOCS = (
    Document(id="a.md", text="The manager is Tom Becker."),
    Document(id="b.md", text="The manager is Ana Ribeiro."),
)


def test_extract_then_verify_graph_per_sub_task() -> None:
    example = load_example()

    def answer(request):  # type: ignore[no-untyped-def]
        if request.prompt.instruction == "Answer yes or no.":
            return "no" if "Invented" in request.prompt.task else "yes"
        return "Tom Becker" if "Tom" in request.prompt.context else "Invented Name"

    backend = ScriptedBackend(fn=answer)
    coordinator = Coordinator(
        backend, sub_agent=graph_sub_agent(example.build_sub_agent_graph()), synthesis="collect"
    )
    result = coordinator.run(Request(documents=DOCS, question="Who is the manager?"))
    assert [a.outcome for a in result.answers] == ["found", "not_found"]
    assert result.answers[0].answer == "Tom Becker"
    assert result.usage.calls == 4  # two calls per sub-agent, all counted
    # each of the graph's calls saw only its own document
    for call in backend.calls:
        own = call.tags["document_id"]
        other = next(d for d in DOCS if d.id != own)
        assert other.text not in call.prompt.context


def test_failures_inside_a_sub_agent_graph_are_reported() -> None:
    example = load_example()
    backend = ScriptedBackend(fn=lambda r: BackendUnavailable("down"))
    coordinator = Coordinator(
        backend,
        sub_agent=graph_sub_agent(example.build_sub_agent_graph()),
        policy=CallPolicy(max_attempts=2, backoff_initial_s=0.001, backoff_max_s=0.001),
    )
    result = coordinator.run(Request(documents=DOCS, question="Q"))
    assert not result.ok and len(result.failed) == 2
    assert any(n.startswith("Missing: 2 of 2 sub-agents failed") for n in result.notes)
    assert all(r.attempts == 2 for r in result.failed)


def test_the_rank_stage_and_hooks_of_the_example_take_effect() -> None:
    example = load_example()
    docs = (
        Document(id="a.md", text="The manager is Tom Becker."),
        Document(id="b.md", text="Beta sells rope."),
    )

    def answer(request):  # type: ignore[no-untyped-def]
        if request.prompt.instruction == "Answer yes or no.":
            return "yes"  # the verifier is fooled: only grounding can catch b.md
        return "Tom Becker" if "Tom" in request.prompt.context else "Bea Rope"

    counter = example.CallCounter()
    coordinator = Coordinator(
        ScriptedBackend(fn=answer),
        stages=Stages(
            sub_agent=graph_sub_agent(example.build_sub_agent_graph()),
            rank=example.grounded_first,
        ),
        synthesis="collect",
        hooks=counter,
    )
    result = coordinator.run(Request(documents=docs, question="Who is the manager?"))
    assert result.answer == "- Tom Becker [a.md]"
    assert [a.selected for a in result.answers] == [True, False]
    assert counter.calls == result.usage.calls == 4


def test_the_example_uses_public_names_only() -> None:
    source = (EXAMPLES / "custom_graph.py").read_text()
    imported = [
        line for line in source.splitlines() if line.startswith(("from fanout", "import fanout"))
    ]
    assert imported == ["from fanout import ("]


@pytest.mark.integration
def test_example_runs_on_the_embedded_model(capsys: pytest.CaptureFixture[str]) -> None:
    load_example().main()
    out = capsys.readouterr().out
    assert ".md]" in out and "calls" in out
