"""Structured results are typed: with an output schema, `data` is the schema's model everywhere a
user sees it (results, streamed sub-results, a resumed run), and JSON round-trips."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import BaseModel

from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import (
    Coordinator,
    Document,
    Request,
    RunContext,
    RunHooks,
    RunResult,
    SubResult,
)
from fanout.orchestrator.checkpoint import open_checkpoint

REQUEST = Request(
    documents=[Document(id="a.md", text="Alpha: 5%"), Document(id="b.md", text="Beta: 7%")],
    question="Price change?",
)


class Price(BaseModel):
    supplier: str
    percent: float


def prices() -> ScriptedBackend:
    def answer(request: object) -> str:
        doc = getattr(request, "tags", {}).get("document_id")
        return (
            '{"supplier": "Alpha", "percent": 5}'
            if doc == "a.md"
            else '{"supplier": "Beta", "percent": 7}'
        )

    return ScriptedBackend(fn=answer)


class Seen(RunHooks):
    def __init__(self) -> None:
        self.data: list[object] = []

    async def on_sub_agent_end(self, ctx: RunContext, result: SubResult) -> None:
        self.data.append(result.data)


def test_data_is_the_schema_model_and_json_round_trips() -> None:
    seen = Seen()
    result = Coordinator(prices(), output_schema=Price, synthesis="collect").run(
        REQUEST, hooks=seen
    )
    assert [a.data for a in result.answers] == [
        Price(supplier="Alpha", percent=5),
        Price(supplier="Beta", percent=7),
    ]
    assert all(isinstance(r.data, Price) for r in result.sub_results)
    assert all(isinstance(d, Price) for d in seen.data)
    assert type(result).model_validate_json(result.model_dump_json()) == result
    assert RunResult.model_validate_json(result.model_dump_json()).answers[0].data == {
        "supplier": "Alpha", "percent": 5.0,
    }  # fmt: skip


def test_without_a_schema_data_stays_empty() -> None:
    result = Coordinator(ScriptedBackend(fn=lambda r: "yes"), synthesis="collect").run(REQUEST)
    assert [r.data for r in result.sub_results] == [None, None]


def test_a_finished_run_resumed_from_its_checkpoint_is_typed_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="langgraph")
    with open_checkpoint(tmp_path / "run.db") as saved:
        first = Coordinator(prices(), output_schema=Price, synthesis="collect", **vars(saved))
        done = first.run(REQUEST, run_id="typed")
        idle = ScriptedBackend()  # a finished run makes no call
        again = Coordinator(idle, output_schema=Price, synthesis="collect", **vars(saved))
        resumed = again.run(REQUEST, run_id="typed")
    assert idle.calls == []
    assert resumed.answers == done.answers
    assert isinstance(resumed.answers[0].data, Price)
    # every type in the state is registered with the checkpoint's serializer: none is refused
    # or restored with a warning
    assert [r.getMessage() for r in caplog.records if r.name.startswith("langgraph")] == []
