"""fanout's log events: silent by default, plain lines in an app's logging, structlog on request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from fanout.agents.errors import BackendTimeout
from fanout.agents.logs import LOGGER_NAME, configure_logging
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import CallPolicy, Coordinator, Document, Request

REQUEST = Request(documents=[Document(id="a.md", text="A.")], question="Q?")


@pytest.fixture(autouse=True)
def _restore_fanout_logger() -> Iterator[None]:
    logger = logging.getLogger(LOGGER_NAME)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def run_with_one_retry() -> None:
    backend = ScriptedBackend([BackendTimeout("slow"), "yes"])
    policy = CallPolicy(max_attempts=2, backoff_initial_s=0.001, backoff_max_s=0.001)
    Coordinator(backend, synthesis="collect", policy=policy).run(REQUEST, run_id="r1")
    backend.assert_consumed()


def test_json_lines_carry_each_attempt_as_separate_fields() -> None:
    stream = io.StringIO()
    configure_logging(json_lines=True, level="info", stream=stream)
    run_with_one_retry()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["event"], e["status"], e["attempt"]) for e in events] == [
        ("sub_agent.call", "retrying", 1),
        ("sub_agent.call", "ok", 2),
    ]
    retry, ok = events
    assert retry["level"] == "warning" and retry["error"] == "BackendTimeout: slow"
    assert ok["run_id"] == "r1" and ok["document_id"] == "a.md" and ok["prompt_tokens"] > 0
    assert {"timestamp", "sub_agent_id", "latency_s"} <= ok.keys()


def test_level_filters_and_a_second_call_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(json_lines=True, level="info", stream=first)
    configure_logging(level="warning", stream=second)
    run_with_one_retry()
    assert first.getvalue() == ""
    lines = second.getvalue().splitlines()
    assert len(lines) == 1 and "sub_agent.call" in lines[0] and "retrying" in lines[0]


def test_an_application_handler_gets_one_plain_key_value_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        run_with_one_retry()
    [record] = caplog.records
    assert record.name == "fanout.orchestrator.policy"
    assert record.getMessage().startswith("sub_agent.call run_id=r1 sub_agent_id=")
    assert 'error="BackendTimeout: slow"' in record.getMessage()
