"""The automatic batching mode: batch only once answers run long enough, never where unmeasured."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

import pytest

from fanout.agents._batch_policy import CPU_MIN_ANSWER_TOKENS, AutoBatchPolicy
from fanout.agents.backend import CompletionRequest


def test_no_batching_before_any_answer_or_for_short_answers() -> None:
    policy = AutoBatchPolicy(32)
    assert policy.expected_answer_tokens is None
    assert not policy.should_batch()  # cold: the plain loop's own path
    for tokens in (4, 6, 5, 90):
        policy.record(tokens)
    assert policy.expected_answer_tokens == 5.5
    assert not policy.should_batch()


def test_batching_once_the_typical_answer_is_long() -> None:
    policy = AutoBatchPolicy(32, window=4)
    for tokens in (5, 5, 64, 64, 64, 64):  # the window forgets the early short ones
        policy.record(tokens)
    assert policy.expected_answer_tokens == 64
    assert policy.should_batch()
    policy.record(3)
    policy.record(3)
    policy.record(3)
    assert not policy.should_batch()


def test_unmeasured_hardware_never_batches() -> None:
    policy = AutoBatchPolicy(None)
    for _ in range(10):
        policy.record(500)
    assert not policy.should_batch()


def test_an_unusable_n_parallel_is_a_user_error(tmp_path: Path) -> None:
    from fanout.agents.errors import UserError
    from fanout.agents.llama_cpp import LlamaCppBackend

    model = tmp_path / "m.gguf"
    model.write_bytes(b"")
    for bad in (0, "eight", 2.5):
        with pytest.raises(UserError, match="n_parallel"):
            LlamaCppBackend(model, n_parallel=bad)  # type: ignore[arg-type]


@pytest.mark.integration
def test_auto_mode_is_the_plain_path_for_short_answers_and_batches_long_ones(
    gemma_path: Path,
) -> None:
    from fanout.agents.llama_cpp import LlamaCppBackend
    from fanout.evals.bench.workload import bench_prompts, copy_prompts

    backend = LlamaCppBackend(gemma_path, n_ctx=2048, n_threads=2)  # n_parallel="auto"
    assert backend.auto_batching is not None
    assert backend.auto_batching.min_answer_tokens == CPU_MIN_ANSWER_TOKENS

    async def answer(prompts: list[object], max_tokens: int) -> list[int]:
        calls = [CompletionRequest(prompt=p, max_tokens=max_tokens) for p in prompts]  # type: ignore[arg-type]
        return [c.completion_tokens for c in await asyncio.gather(*map(backend.complete, calls))]

    short = asyncio.run(answer(list(bench_prompts(3)), 48))
    assert statistics.median(short) < CPU_MIN_ANSWER_TOKENS
    assert backend.batch_engine is None  # QA answers: every call took the sequential path

    budget = CPU_MIN_ANSWER_TOKENS + 4
    long = asyncio.run(answer(list(copy_prompts(4)), budget))  # history: short answers only
    assert backend.batch_engine is None and statistics.median(long) >= CPU_MIN_ANSWER_TOKENS
    asyncio.run(answer(list(copy_prompts(3)), budget))  # now the typical answer is long
    engine = backend.batch_engine
    assert engine is not None, "long answers never switched to batching"
    assert engine.stats.requests == 3
