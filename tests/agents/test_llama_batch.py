"""Batched in-process llama.cpp: scheduling and stop rules (unit), exactness on the real model."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fanout.agents._llama_batch import MIN_COPY_TOKENS, _plan_admission, _Slot, common_prefix_length
from fanout.agents._llama_completion import BatchOutput, CompletionJob, SequenceDecoder
from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.errors import ContextOverflow, UserError
from fanout.agents.subagent import task_prompt
from fanout.agents.task import SubTask

# ggml picks its small-batch kernel once, at the first matmul of the process: set it before any
# test computes, so the exactness tests hold whatever order the suite runs in.
os.environ.setdefault("GGML_CPU_TILED_MM", "0")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "suppliers"


async def until(condition: Callable[[], bool]) -> None:
    """Wait for state the engine's worker thread changes (no asyncio event can carry it)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


def job(tokens: list[int], *, max_tokens: int = 8, stop: tuple[bytes, ...] = ()) -> CompletionJob:
    return CompletionJob(
        tokens=tokens, max_tokens=max_tokens, stop=list(stop), temperature=0.0, seed=0
    )


# --- unit: prefixes and admission ------------------------------------------------------------


def test_common_prefix_length() -> None:
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([5], [6]) == 0


PREFIX = list(range(100, 100 + 2 * MIN_COPY_TOKENS))  # long enough to be worth a copy


def test_a_job_keeps_the_free_slot_whose_leftover_cache_matches_it() -> None:
    stale, warm = _Slot(0, cached=[7, 7, 7]), _Slot(1, cached=[*PREFIX, 1, 2])
    new = job([*PREFIX, 1, 9, 9])
    (placement,), prefix_end = _plan_admission([new], [stale, warm], [])
    assert placement.slot is warm and placement.source is None
    assert placement.keep == placement.start == len(PREFIX) + 1
    assert prefix_end == 0


def test_a_job_copies_a_running_sequence_that_shares_more() -> None:
    running = _Slot(2, cached=[*PREFIX, 5, 5, 5])
    (placement,), _ = _plan_admission([job([*PREFIX, 5, 6])], [_Slot(0)], [running])
    assert placement.source is running
    assert placement.keep == placement.start == len(PREFIX) + 1


def test_a_short_common_prefix_is_not_worth_a_copy() -> None:
    running = _Slot(2, cached=[*PREFIX[: MIN_COPY_TOKENS - 1], 5])
    (placement,), _ = _plan_admission([job([*PREFIX, 6])], [_Slot(0)], [running])
    assert placement.source is None and placement.keep == 0


def test_the_last_prompt_token_is_always_evaluated() -> None:
    tokens = [*PREFIX, 3]
    (placement,), _ = _plan_admission([job(tokens)], [_Slot(0, cached=list(tokens))], [])
    assert placement.keep == placement.start == len(tokens) - 1


def test_newcomers_share_their_common_prefix_through_the_first_one() -> None:
    jobs = [job([*PREFIX, i, i]) for i in range(3)]
    placements, prefix_end = _plan_admission(jobs, [_Slot(i) for i in range(3)], [])
    assert prefix_end == len(PREFIX)  # evaluated once, in the leader's stream
    leader, *others = placements
    assert leader.source is None and leader.keep == 0 and leader.start == len(PREFIX)
    assert all(p.source is leader.slot and p.keep == p.start == len(PREFIX) for p in others)


def test_newcomers_do_not_copy_a_copy_made_in_the_same_step() -> None:
    running = _Slot(5, cached=[*PREFIX, 1, 1])
    jobs = [job([*PREFIX, 1, 2]), job([*PREFIX, 1, 3])]
    free = [_Slot(0, cached=[*PREFIX[:3]]), _Slot(1, cached=[*PREFIX[:3]])]
    placements, prefix_end = _plan_admission(jobs, free, [running])
    assert prefix_end == 0
    assert all(p.source is running for p in placements)  # not the leader's not-yet-copied stream


def test_without_sharing_every_prompt_is_evaluated_whole() -> None:
    jobs = [job([*PREFIX, i]) for i in range(2)]
    placements, prefix_end = _plan_admission(jobs, [_Slot(0), _Slot(1)], [], share=False)
    assert prefix_end == 0
    assert [(p.source, p.keep, p.start) for p in placements] == [(None, 0, 0), (None, 0, 0)]


def test_a_prompt_is_evaluated_in_a_call_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # llama.cpp splits a call mixing one sequence's prompt with other sequences' tokens into
    # micro-batches whose shape changes the prompt's rounding: prompts must travel alone.
    from fanout.agents._llama_batch import LlamaBatchEngine

    engine = LlamaBatchEngine.__new__(LlamaBatchEngine)  # no model: the calls are recorded
    engine._slots = [_Slot(i) for i in range(4)]
    engine._steps, engine.share_prefix = 0, True
    engine._totals = {"max_active": 0}
    calls: list[list[tuple[int, int]]] = []

    def decode(work: list[tuple[_Slot, int, bool]]) -> None:
        calls.append([(slot.seq_id, token) for slot, token, _ in work])
        for slot, token, _ in work:
            slot.cached.append(token)

    monkeypatch.setattr(engine, "_decode", decode)
    monkeypatch.setattr(engine, "_place", lambda p: p.slot.cached.__delitem__(slice(p.keep, None)))
    for slot, pending in zip(engine._slots[:2], (7, 8), strict=True):  # two running sequences
        slot.decoder, slot.pending, slot.cached = SequenceDecoder(job([1]), 0), pending, [1, 2]
    newcomers = [job([*PREFIX, 1, i]) for i in range(2)]
    engine._step(newcomers, engine._slots[2:])
    for call in calls:
        if len(call) > len({seq for seq, _ in call}):  # some sequence brought several tokens
            assert len({seq for seq, _ in call}) == 1
    assert calls[-1] == [(0, 7), (1, 8)]  # then one decode step for the running sequences


# --- unit: stop rules, mirrored from create_completion -----------------------------------------

PIECES = {1: b" Tom", 2: b" Becker", 3: b"\n\n", 4: b"Question", 5: b"\xc3", 6: b"\xa9", 7: b"!"}


def detokenize(tokens: list[int]) -> bytes:
    return b"".join(PIECES[t] for t in tokens)


def feed(decoder: SequenceDecoder, tokens: list[int]) -> BatchOutput | None:
    for token in tokens:
        done = decoder.push(token, detokenize, is_eog=token == 0)
        if done is not None:
            return done
    return None


def test_a_stop_sequence_ends_the_answer_before_it() -> None:
    decoder = SequenceDecoder(job([9, 9], stop=(b"\n\n", b"\nQuestion:")), shared=1)
    done = feed(decoder, [1, 2, 3, 4])
    assert done == BatchOutput(
        text=" Tom Becker",
        prompt_tokens=2,
        completion_tokens=3,
        shared_prefix_tokens=1,
        finish_reason="stop",
    )


def test_the_budget_ends_the_answer() -> None:
    done = feed(SequenceDecoder(job([9], max_tokens=2), shared=0), [1, 2, 7])
    assert done is not None and (done.text, done.finish_reason) == (" Tom Becker", "length")
    assert done.completion_tokens == 2


def test_end_of_generation_is_not_counted() -> None:
    done = feed(SequenceDecoder(job([9]), shared=0), [1, 0])
    assert done is not None and (done.text, done.completion_tokens) == (" Tom", 1)


def test_an_incomplete_utf8_character_waits_for_its_second_byte() -> None:
    # The budget is reached on the first byte of "é", but the answer waits for the second one.
    done = feed(SequenceDecoder(job([9], max_tokens=2), shared=0), [1, 5, 6, 7])
    assert done is not None and done.text == " Tomé" and done.completion_tokens == 3


def test_n_parallel_below_one_is_refused(tmp_path: Path) -> None:
    from fanout.agents.llama_cpp import LlamaCppBackend

    model = tmp_path / "model.gguf"
    model.write_bytes(b"not loaded")
    with pytest.raises(UserError, match="n_parallel"):
        LlamaCppBackend(model, n_parallel=0)


# --- integration: the real embedded model ------------------------------------------------------


def supplier_prompts() -> list[Prompt]:
    questions = ("Who is the account manager?", "What changed?", "When do deliveries happen?")
    docs = sorted(EXAMPLES.glob("*.md"))
    return [
        task_prompt(SubTask(id=f"{d.stem}-{i}", document_id=d.name, task=q, context=d.read_text()))
        for d in docs
        for i, q in enumerate(questions)
    ]


@pytest.fixture(scope="module")
def exact_backends(gemma_path: Path):  # type: ignore[no-untyped-def]
    """The sequential path and the batched one, on the same batch-invariant weights."""
    from fanout.agents.llama_cpp import LlamaCppBackend

    sequential = LlamaCppBackend(gemma_path, n_ctx=2048, n_threads=2, batch_invariant=True)
    batched = LlamaCppBackend(gemma_path, n_ctx=2048, n_threads=2, n_parallel=4)
    assert batched.llama is sequential.llama  # one model load
    return sequential, batched


def requests_with_budgets() -> list[CompletionRequest]:
    # A few tight budgets, so answers end by length as well as at stop sequences.
    budgets = (24, 3, 24, 24, 2, 24, 24, 5, 24)
    return [
        CompletionRequest(prompt=p, max_tokens=b)
        for p, b in zip(supplier_prompts(), budgets, strict=True)
    ]


@pytest.mark.integration
def test_batched_greedy_output_equals_the_sequential_path(exact_backends) -> None:  # type: ignore[no-untyped-def]
    sequential, batched = exact_backends
    requests = requests_with_budgets()

    async def one_by_one() -> list[tuple[str, int, int]]:
        return [
            (c.text, c.prompt_tokens, c.completion_tokens)
            for c in [await sequential.complete(r) for r in requests]
        ]

    async def together(stagger: bool) -> list[tuple[str, int, int]]:
        start = engine.stats.decode_calls
        finished = 0

        async def call(i: int, request: CompletionRequest) -> tuple[str, int, int]:
            nonlocal finished
            # Staggered, call i joins once the batch has made i decode calls (or has drained):
            # it lands in a batch already decoding and copies its prefix from a running stream.
            if stagger:
                await until(lambda: engine.stats.decode_calls >= start + i or finished >= i)
            c = await batched.complete(request)
            finished += 1
            return c.text, c.prompt_tokens, c.completion_tokens

        return await asyncio.gather(*(call(i, r) for i, r in enumerate(requests)))

    engine = batched.batch_engine
    expected = asyncio.run(one_by_one())
    before = engine.stats
    assert asyncio.run(together(stagger=False)) == expected
    assert asyncio.run(together(stagger=True)) == expected
    budgets = [r.max_tokens for r in requests]
    assert any(n == b < 24 for (_, _, n), b in zip(expected, budgets, strict=True))  # cut by budget
    assert any(n < b for (_, _, n), b in zip(expected, budgets, strict=True))  # by a stop sequence
    after = engine.stats
    assert after.requests - before.requests == 2 * len(requests)
    assert after.prompt_tokens - before.prompt_tokens == 2 * sum(p for _, p, _ in expected)
    # The instruction and examples are evaluated once, not once per sub-agent.
    assert after.shared_prefix_tokens - before.shared_prefix_tokens > len(requests) * 100
    assert after.max_active > 1


@pytest.mark.integration
def test_long_answers_stay_exact_when_requests_outnumber_sequences(exact_backends) -> None:  # type: ignore[no-untyped-def]
    # No stop sequence: every answer runs 64 tokens, so newcomers join a batch still decoding,
    # reuse and trim the caches of finished sequences, and the caches outgrow 256 cells.
    from fanout.agents._prompts import render_completion
    from fanout.evals.bench.workload import bench_prompts

    sequential, batched = exact_backends
    texts = [render_completion(p) for p in bench_prompts(6)]
    with sequential.lock:
        done = [
            sequential.llama.create_completion(prompt=t, max_tokens=64, temperature=0.0, stop=[])
            for t in texts
        ]
    expected = [d["choices"][0]["text"] for d in done]
    engine = batched.batch_engine

    async def together() -> list[str]:
        outs = await asyncio.gather(*(engine.complete(t, max_tokens=64) for t in texts))
        return [o.text for o in outs]

    assert engine.max_sequences < len(texts)
    assert asyncio.run(together()) == expected


@pytest.mark.integration
def test_prompt_tokens_are_counted_as_create_completion_counts_them(exact_backends) -> None:  # type: ignore[no-untyped-def]
    from fanout.agents._llama_batch import completion_prompt_tokens
    from fanout.agents._prompts import render_completion

    sequential, _ = exact_backends
    text = render_completion(supplier_prompts()[0])
    with sequential.lock:
        out = sequential.llama.create_completion(prompt=text, max_tokens=1)
        tokens = sequential.llama._input_ids.tolist()
    assert (
        completion_prompt_tokens(sequential.llama, text) == tokens[: out["usage"]["prompt_tokens"]]
    )


@pytest.mark.integration
def test_a_cancelled_call_leaves_the_others_untouched(exact_backends) -> None:  # type: ignore[no-untyped-def]
    sequential, batched = exact_backends
    requests = requests_with_budgets()[:3]
    expected = [asyncio.run(sequential.complete(r)).text for r in requests]

    engine = batched.batch_engine

    async def run() -> list[str]:
        start = engine.stats.decode_calls
        tasks = [asyncio.create_task(batched.complete(r)) for r in requests]
        doomed = asyncio.create_task(
            batched.complete(requests[0].model_copy(update={"max_tokens": 500}))
        )
        await until(lambda: engine.stats.decode_calls >= start + 2)  # cancel it mid-decoding
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return [c.text for c in await asyncio.gather(*tasks)]

    assert asyncio.run(run()) == expected


@pytest.mark.integration
def test_a_prompt_longer_than_the_context_overflows(exact_backends) -> None:  # type: ignore[no-untyped-def]
    _, batched = exact_backends
    prompt = Prompt(instruction="Answer.", context="word " * 3000, task="What?")
    with pytest.raises(ContextOverflow):
        asyncio.run(batched.complete(CompletionRequest(prompt=prompt)))


@pytest.mark.integration
def test_schema_calls_take_the_sequential_path(exact_backends) -> None:  # type: ignore[no-untyped-def]
    _, batched = exact_backends
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    prompt = supplier_prompts()[0].model_copy(update={"examples": ()})
    before = batched.batch_engine.stats.requests
    done = asyncio.run(
        batched.complete(CompletionRequest(prompt=prompt, max_tokens=24, json_schema=schema))
    )
    assert isinstance(done.data, dict) and "name" in done.data
    assert batched.batch_engine.stats.requests == before


@pytest.mark.integration
def test_sequential_prefix_reuse_is_exact_on_batch_invariant_weights(gemma_path: Path) -> None:
    from fanout.agents.llama_cpp import LlamaCppBackend

    reuse = LlamaCppBackend(gemma_path, n_ctx=2048, n_threads=2, batch_invariant=True)
    fresh = LlamaCppBackend(
        gemma_path, n_ctx=2048, n_threads=2, batch_invariant=True, prefix_reuse=False
    )
    requests = requests_with_budgets()[:4]

    async def answers(backend: LlamaCppBackend) -> list[str]:
        return [(await backend.complete(r)).text for r in requests]

    assert asyncio.run(answers(reuse)) == asyncio.run(answers(fresh))


@pytest.mark.integration
def test_every_decode_runs_on_the_one_compute_thread(
    exact_backends,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A second thread driving llama.cpp gets its own OpenMP team and slows both (agents/_compute.py).
    import threading

    import llama_cpp
    import llama_cpp.llama_cpp as bindings

    from fanout.agents._compute import compute_thread

    sequential, batched = exact_backends
    threads: set[int] = set()
    decode = bindings.llama_decode

    def recording(*args: object) -> int:
        threads.add(threading.get_ident())
        return int(decode(*args))

    monkeypatch.setattr(bindings, "llama_decode", recording)  # llama-cpp-python's own calls
    monkeypatch.setattr(llama_cpp, "llama_decode", recording)  # the batch engine's
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    requests = requests_with_budgets()[:4]
    structured = CompletionRequest(prompt=requests[0].prompt, max_tokens=16, json_schema=schema)

    async def everything() -> None:
        await asyncio.gather(
            *(sequential.complete(r) for r in requests),
            *(batched.complete(r) for r in requests),
            batched.complete(structured),
        )

    asyncio.run(everything())
    assert len(threads) == 1
    assert threads == {compute_thread().call(threading.get_ident)}


@pytest.mark.integration
def test_a_sequential_call_runs_between_the_steps_of_a_long_batch(exact_backends) -> None:  # type: ignore[no-untyped-def]
    # Batch steps are queued one at a time on the compute thread, so a schema call (sequential)
    # does not wait for a batch of long answers to drain.
    from fanout.agents._prompts import render_completion
    from fanout.evals.bench.workload import copy_prompts

    _, batched = exact_backends
    engine = batched.batch_engine
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    structured = CompletionRequest(
        prompt=supplier_prompts()[0].model_copy(update={"examples": ()}),
        max_tokens=16,
        json_schema=schema,
    )
    finished: list[str] = []

    async def run() -> None:
        async def long(i: int, text: str) -> None:
            await engine.complete(text, max_tokens=160)
            finished.append(f"long-{i}")

        start = engine.stats.decode_calls
        texts = [render_completion(p) for p in copy_prompts(2)]
        tasks = [asyncio.create_task(long(i, t)) for i, t in enumerate(texts)]
        await until(lambda: engine.stats.decode_calls >= start + 3)
        await batched.complete(structured)
        finished.append("structured")
        await asyncio.gather(*tasks)

    asyncio.run(run())
    assert finished[0] == "structured", finished


@pytest.mark.integration
def test_the_context_defaults_to_the_trained_one_and_batched_sequences_stay_short(
    gemma_path: Path,
) -> None:
    """No n_ctx: the GGUF's trained context (32,768 for Gemma 3 270M), not a fixed 4,096; a batched
    sequence holds at most SEQUENCE_CTX tokens, and a call longer than that runs sequentially."""
    from fanout.agents._llama_batch import SEQUENCE_CTX
    from fanout.agents.llama_cpp import LlamaCppBackend

    with LlamaCppBackend(gemma_path, n_threads=2, n_parallel=2) as backend:
        assert backend.context_window == backend.llama._model.n_ctx_train() == 32768
        long = Prompt(instruction="Repeat.", context="word " * 5000, task="Say ok.")
        done = asyncio.run(backend.complete(CompletionRequest(prompt=long, max_tokens=2)))
        assert done.prompt_tokens > SEQUENCE_CTX  # fitted nowhere but the sequential path
        engine = backend.batch_engine
        assert engine is not None and engine.n_ctx == SEQUENCE_CTX
        assert engine.stats.prompt_tokens == 0  # the batch engine never saw it
