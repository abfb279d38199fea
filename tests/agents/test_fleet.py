"""OpenAIBackend over several endpoints: least-outstanding choice, health, and real HTTP."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fanout.agents._fleet import EndpointPool, parse_base_urls, redact_url
from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.errors import BackendUnavailable, UserError
from fanout.agents.openai import OpenAIBackend
from fanout.evals.bench.loopback import LoopbackServer
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy
from fanout.orchestrator.request import Document, Request
from fanout.orchestrator.result import RunResult


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def dead_url() -> str:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def request() -> CompletionRequest:
    return CompletionRequest(prompt=Prompt(instruction="Answer.", task="What?"))


def run(backend: OpenAIBackend, n: int, policy: CallPolicy) -> RunResult:
    return Coordinator(backend, synthesis="collect", policy=policy).run(docs_request(n))


def docs_request(n: int) -> Request:
    documents = tuple(Document(id=f"d{i}.md", text=f"Item {i} costs {i} euros.") for i in range(n))
    return Request(documents=documents, question="What does the item cost?")


# -- selection -------------------------------------------------------------------------------


def test_idle_endpoints_take_turns() -> None:
    pool = EndpointPool(["a", "b", "c"])
    picks = []
    for _ in range(6):
        index = pool.acquire()
        picks.append(index)
        pool.release(index, "ok")
    assert picks == [0, 1, 2, 0, 1, 2]


def test_least_outstanding_wins() -> None:
    pool = EndpointPool(["a", "b", "c"])
    assert [pool.acquire() for _ in range(3)] == [0, 1, 2]
    pool.release(1, "ok")
    assert pool.acquire() == 1  # the only one with nothing in flight
    assert pool.acquire() == 0  # all at one in flight now: least recently picked
    assert [s.outstanding for s in pool.stats()] == [2, 1, 1]


def test_unreachable_endpoint_sits_out_its_cooldown() -> None:
    clock = FakeClock()
    pool = EndpointPool(["a", "b"], cooldown_s=5.0, clock=clock)
    index = pool.acquire()
    assert index == 0
    assert pool.release(0, "unreachable") is True
    busy = [pool.acquire() for _ in range(3)]  # b is busier, but a is down
    assert busy == [1, 1, 1]
    assert [s.healthy for s in pool.stats()] == [False, True]
    clock.now += 5.0
    assert pool.acquire() == 0
    assert pool.stats()[0].healthy


def test_when_all_are_down_the_first_due_back_is_tried() -> None:
    clock = FakeClock()
    pool = EndpointPool(["a", "b"], cooldown_s=5.0, clock=clock)
    pool.release(pool.acquire(), "unreachable")  # a down until 105
    clock.now += 1.0
    pool.release(pool.acquire(), "unreachable")  # b down until 106
    assert [s.healthy for s in pool.stats()] == [False, False]
    assert pool.acquire() == 0


def test_success_restores_health_and_other_failures_do_not_take_it_down() -> None:
    clock = FakeClock()
    pool = EndpointPool(["a", "b"], clock=clock)
    pool.release(pool.acquire(), "unreachable")
    assert not pool.stats()[0].healthy
    # With every other endpoint down too, a is tried again, and answers.
    pool.release(pool.acquire(), "unreachable")
    first = pool.acquire()
    pool.release(first, "ok")
    assert pool.stats()[first].healthy
    index = pool.acquire()
    pool.release(index, "failed")  # e.g. HTTP 500: the endpoint answered, so it is reachable
    pool.release(pool.acquire(), "cancelled")  # the caller gave up: no verdict on the endpoint
    stats = pool.stats()
    assert stats[index].healthy
    assert sum(s.failed for s in stats) == 3
    assert sum(s.unreachable for s in stats) == 2
    assert all(s.outstanding == 0 for s in stats)


def test_mark_down_reports_only_the_transition() -> None:
    pool = EndpointPool(["a", "b"], clock=FakeClock())
    assert pool.mark_down(1) is True
    assert pool.mark_down(1) is False
    assert [s.healthy for s in pool.stats()] == [True, False]


def test_a_pool_needs_an_endpoint() -> None:
    with pytest.raises(UserError):
        EndpointPool([])


# -- configuration -----------------------------------------------------------------------------


def test_base_urls_from_strings_lists_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_base_urls(None) == ()
    assert parse_base_urls("http://a/v1") == ("http://a/v1",)
    assert parse_base_urls(" http://a/v1, http://b/v1 ,") == ("http://a/v1", "http://b/v1")
    assert parse_base_urls(["http://a/v1", "http://b/v1"]) == ("http://a/v1", "http://b/v1")
    with pytest.raises(UserError, match="twice"):
        parse_base_urls("http://a/v1,http://a/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://a/v1,http://b/v1")
    backend = OpenAIBackend("m")
    assert backend.base_urls == ("http://a/v1", "http://b/v1")
    assert backend.base_url == "http://a/v1"
    assert len(backend.stats()) == 2


def test_secrets_stay_out_of_repr_and_stats() -> None:
    backend = OpenAIBackend(
        "m", base_url=["http://user:hunter2@a:8000/v1", "http://b/v1"], api_key="sk-secret"
    )
    shown = repr(backend) + repr(backend.stats())
    assert "hunter2" not in shown
    assert "sk-secret" not in shown
    assert "http://***@a:8000/v1" in shown
    assert redact_url(None) == "api.openai.com"
    assert redact_url("http://a/v1") == "http://a/v1"
    assert redact_url("http://u:pw@[::1]:8080/v1") == "http://***@[::1]:8080/v1"
    assert redact_url("http://tok@h/v1?api_key=k1&x=1") == "http://***@h/v1?api_key=***&x=1"


def test_single_endpoint_keeps_its_old_shape() -> None:
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:1/v1")
    assert backend.base_url == "http://127.0.0.1:1/v1"
    assert "base_url='http://127.0.0.1:1/v1'" in repr(backend)
    with pytest.raises(UserError, match="API key"):
        OpenAIBackend("m")


# -- over real HTTP (in-process loopback servers, no model) -----------------------------------


def test_calls_spread_over_two_servers_and_both_endpoints_speak() -> None:
    with LoopbackServer(0.02, in_process=True) as a, LoopbackServer(0.02, in_process=True) as b:
        for endpoint in ("chat", "completions"):
            backend = OpenAIBackend("m", base_url=[a.base_url, b.base_url], endpoint=endpoint)

            async def fan_out(backend: OpenAIBackend = backend) -> list[str]:
                completions = await asyncio.gather(*(backend.complete(request()) for _ in range(8)))
                return [c.text for c in completions]

            assert asyncio.run(fan_out()) == ["ok"] * 8
            assert [s.ok for s in backend.stats()] == [4, 4]
        assert a.requests_served() == 8
        assert b.requests_served() == 8


def test_least_outstanding_sends_more_work_to_the_faster_server() -> None:
    with (
        LoopbackServer(0.3, in_process=True) as slow,
        LoopbackServer(0.01, in_process=True) as fast,
    ):
        backend = OpenAIBackend("m", base_url=[slow.base_url, fast.base_url])
        result = run(backend, 24, CallPolicy(max_concurrency=4))
    assert result.ok
    slow_stats, fast_stats = backend.stats()
    assert slow_stats.requests + fast_stats.requests == 24
    assert fast_stats.requests > slow_stats.requests


def test_dead_endpoint_is_skipped_and_the_retry_lands_on_a_live_one() -> None:
    with LoopbackServer(0.0, in_process=True) as live:
        backend = OpenAIBackend("m", base_url=[dead_url(), live.base_url], cooldown_s=60)

        async def first_call() -> None:
            await backend.complete(request())

        with pytest.raises(BackendUnavailable) as failure:  # the dead one goes first
            asyncio.run(first_call())
        assert failure.value.transient
        dead, alive = backend.stats()
        assert (dead.unreachable, dead.healthy) == (1, False)

        policy = CallPolicy(max_concurrency=4, max_attempts=2, backoff_initial_s=0.01)
        result = run(backend, 6, policy)
    assert result.ok
    dead, alive = backend.stats()
    assert dead.requests == 1  # never tried again while on cool-down
    assert alive.ok == 6


def test_check_fails_only_when_no_endpoint_answers() -> None:
    with LoopbackServer(0.0, in_process=True) as live:
        fleet = OpenAIBackend("m", base_url=[dead_url(), live.base_url])
        asyncio.run(fleet.check())
        assert [s.healthy for s in fleet.stats()] == [False, True]
    lone = OpenAIBackend("m", base_url=[dead_url(), dead_url()])
    with pytest.raises(UserError, match="cannot reach"):
        asyncio.run(lone.check())


# -- two real llama.cpp servers -----------------------------------------------------------------


@pytest.mark.integration
def test_two_llama_servers_both_receive_work(gemma_path: Path, tmp_path: Path) -> None:
    from tests.conftest import LlamaServer

    # Started side by side: each start is mostly imports and a model load, one core apiece.
    with ThreadPoolExecutor(2) as pool:
        starts = [
            pool.submit(LlamaServer, gemma_path, log=tmp_path / f"s{i}.log") for i in range(2)
        ]
    servers = [start.result() for start in starts if start.exception() is None]
    errors = [start.exception() for start in starts if start.exception() is not None]
    try:
        if errors:
            raise RuntimeError(f"a llama_cpp.server failed to start: {errors[0]}")
        backend = OpenAIBackend(
            "gemma", base_url=[s.base_url for s in servers], endpoint="completions"
        )
        asyncio.run(backend.check())
        result = run(backend, 2, CallPolicy(max_concurrency=2, max_tokens=4))
    finally:
        for server in servers:
            server.stop()
    assert result.ok, result.failed
    stats = backend.stats()
    assert sum(s.ok for s in stats) == 2
    assert all(s.ok >= 1 for s in stats), stats
    for server in servers:
        assert "POST /v1/completions" in server.log.read_text(errors="replace")
