"""Tracing: OpenTelemetry spans (run -> sub-agent -> call attempt) read back from the SDK's in-memory
exporter, and LangChain callbacks seeing the graph's nodes and the model calls nested in them."""

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from fanout import CallPolicy, Coordinator, Document, Request
from fanout.agents.backend import CompletionRequest
from fanout.agents.errors import BackendRejected, BackendUnavailable
from fanout.agents.langchain import LangChainBackend
from fanout.agents.testing import ScriptedBackend
from tests.agents.test_langchain import Replies

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> None:
    # The global provider can be set once per process; every test here reads the same exporter.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    EXPORTER.clear()
    yield EXPORTER


REQUEST = Request(
    documents=tuple(Document(id=f"{d}.md", text=f"text of {d}") for d in ("a", "b", "c")),
    question="What is it?",
)


def scripted() -> ScriptedBackend:
    """a answers; b fails once with a 503 (retried); c is refused for good (400)."""
    seen: set[str] = set()

    def answer(request: CompletionRequest) -> Any:
        doc = request.tags["document_id"]
        if doc == "b.md" and doc not in seen:
            seen.add(doc)
            return BackendUnavailable("HTTP 503", status_code=503)
        if doc == "c.md":
            return BackendRejected("HTTP 400: bad request", status_code=400)
        return f"answer from {doc}"

    return ScriptedBackend(fn=answer)


def by_name(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def test_spans_nest_run_sub_agent_call_with_tokens_and_status(spans: InMemorySpanExporter) -> None:
    coordinator = Coordinator(
        scripted(), synthesis="collect", policy=CallPolicy(max_attempts=2, backoff_initial_s=0.01)
    )
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("caller") as outer:  # sync run(): crosses the portal loop
        result = coordinator.run(REQUEST)
    (run,) = by_name(spans, "fanout.run")
    assert run.parent is not None and run.parent.span_id == outer.get_span_context().span_id
    assert run.attributes is not None
    assert run.attributes["fanout.sub_agents"] == 3 and run.attributes["fanout.failed"] == 1
    assert run.attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert run.status.status_code is StatusCode.ERROR

    agents = {s.attributes["fanout.document_id"]: s for s in by_name(spans, "fanout.sub_agent")}  # type: ignore[index]
    assert set(agents) == {"a.md", "b.md", "c.md"}
    for agent in agents.values():
        assert agent.parent is not None and agent.parent.span_id == run.context.span_id
    calls: dict[str, list[ReadableSpan]] = {doc: [] for doc in agents}
    for call in by_name(spans, "fanout.call"):
        parent = next(
            d for d, a in agents.items() if call.parent and call.parent.span_id == a.context.span_id
        )
        calls[parent].append(call)
    assert [len(calls[d]) for d in ("a.md", "b.md", "c.md")] == [1, 2, 1]
    ok_call = calls["a.md"][0]
    assert ok_call.status.status_code is not StatusCode.ERROR and ok_call.attributes is not None
    assert ok_call.attributes["gen_ai.usage.output_tokens"] > 0
    assert ok_call.attributes["gen_ai.request.model"] == "scripted"
    first_b, second_b = sorted(calls["b.md"], key=lambda s: s.attributes["fanout.attempt"])  # type: ignore[index]
    assert first_b.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in first_b.events)
    assert second_b.status.status_code is not StatusCode.ERROR
    assert agents["b.md"].attributes["fanout.attempts"] == 2  # type: ignore[index]
    assert agents["c.md"].status.status_code is StatusCode.ERROR
    assert agents["c.md"].attributes["fanout.status"] == "failed"  # type: ignore[index]


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.chains: dict[UUID, str] = {}
        self.model_parents: list[UUID | None] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.chains[run_id] = kwargs.get("name") or ""

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        self.model_parents.append(parent_run_id)


def test_langchain_callbacks_see_nodes_and_the_model_calls_inside_them() -> None:
    model = GenericFakeChatModel(messages=Replies("one", "two", "three"))
    recorder = Recorder()
    coordinator = Coordinator(LangChainBackend(model), synthesis="collect")
    result = coordinator.run(REQUEST, config={"callbacks": [recorder]})
    assert result.ok
    names = set(recorder.chains.values())
    assert {"split", "sub_agent", "reduce", "synthesize"} <= names
    assert len(recorder.model_parents) == 3
    for parent in recorder.model_parents:
        assert parent is not None and recorder.chains[parent] == "sub_agent"
