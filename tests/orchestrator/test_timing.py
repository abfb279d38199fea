"""Queue time and call time are reported apart: waiting for a slot or the model is not latency."""

from __future__ import annotations

import pytest

from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import CallPolicy, Coordinator, Document, Request

DELAY = 0.05
REQUEST = Request(
    documents=[Document(id=f"{name}.md", text=f"{name} is here.") for name in "abc"],
    question="Who is here?",
)


def test_waiting_for_a_concurrency_slot_is_queue_time_not_latency() -> None:
    backend = ScriptedBackend(fn=lambda r: "yes", delay_s=DELAY)
    policy = CallPolicy(max_concurrency=1)
    result = Coordinator(backend, synthesis="collect", policy=policy).run(REQUEST)
    usages = [r.usage for r in result.sub_results]
    assert all(u.latency_s == DELAY for u in usages)  # the fake's call time, exactly
    # One slot: the second call waited for the first, the third for both.
    queued = sorted(u.queue_s for u in usages)
    assert queued[1] >= 0.9 * DELAY and queued[2] >= 1.8 * DELAY
    assert result.usage.stages["sub_agents"].queue_s == pytest.approx(sum(queued))


@pytest.mark.integration
def test_calls_serialised_by_the_model_lock_sum_to_at_most_the_run(llama_backend) -> None:  # type: ignore[no-untyped-def]
    policy = CallPolicy(max_concurrency=3, max_tokens=8)
    result = Coordinator(llama_backend, synthesis="collect", policy=policy).run(REQUEST)
    assert result.ok
    usages = [r.usage for r in result.sub_results]
    # One llama.cpp context runs one call at a time, so call times cannot add up to more than
    # the run (before, each latency included the wait for the lock and their sum exceeded it).
    assert sum(u.latency_s for u in usages) <= result.usage.wall_s + 0.05 * len(usages)
    assert sum(u.queue_s > 0 for u in usages) >= 2  # three calls, one model: two waited
