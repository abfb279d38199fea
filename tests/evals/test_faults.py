from __future__ import annotations

import asyncio

import pytest

from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.errors import BackendTimeout, BackendUnavailable, UserError
from fanout.agents.testing import ScriptedBackend
from fanout.evals.faults import WRONG_ANSWER, FaultSpec, FaultyBackend, wrong_text


def request(i: int) -> CompletionRequest:
    return CompletionRequest(prompt=Prompt(instruction="Answer.", context=f"doc {i}", task="q?"))


def test_parse_spec() -> None:
    spec = FaultSpec.parse("error=0.1, timeout=0.05,garbage=0.05")
    assert (spec.error, spec.timeout, spec.garbage, spec.wrong) == (0.1, 0.05, 0.05, 0.0)
    assert str(spec) == "error=0.1,timeout=0.05,garbage=0.05"
    assert spec.total == pytest.approx(0.2) and spec.active
    assert not FaultSpec.parse("none").active
    assert str(FaultSpec.parse("")) == "none"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("error", "write kind=rate"),
        ("error=", "write kind=rate"),
        ("crash=0.1", "unknown fault kind 'crash'"),
        ("error=lots", "'lots' for error is not a number"),
        ("error=1.5", "between 0 and 1"),
        ("error=-0.1", "between 0 and 1"),
        ("error=0.6,wrong=0.6", "add up to 1.2"),
        ("error=0.1,error=0.2", "given twice"),
        ("error=0.1,,wrong=0.1", "write kind=rate"),
    ],
)
def test_bad_specs_are_user_errors(spec: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        FaultSpec.parse(spec)


async def _drive(backend: FaultyBackend, order: list[int]) -> dict[int, str]:
    outcomes: dict[int, str] = {}

    async def one(i: int) -> None:
        try:
            completion = await backend.complete(request(i))
            outcomes[i] = completion.text
        except BackendUnavailable:
            outcomes[i] = "<error>"
        except BackendTimeout:
            outcomes[i] = "<timeout>"

    await asyncio.gather(*(one(i) for i in order))
    return outcomes


def test_faults_are_deterministic_for_a_seed_whatever_the_call_order() -> None:
    spec = FaultSpec.parse("error=0.2,timeout=0.1,garbage=0.1,wrong=0.1")
    forward = FaultyBackend(ScriptedBackend(fn=lambda r: "ok"), spec, seed=7)
    backward = FaultyBackend(ScriptedBackend(fn=lambda r: "ok"), spec, seed=7)
    first = asyncio.run(_drive(forward, list(range(200))))
    second = asyncio.run(_drive(backward, list(reversed(range(200)))))
    assert first == second
    assert sorted(f.kind for f in forward.injected) == sorted(f.kind for f in backward.injected)
    other = asyncio.run(_drive(FaultyBackend(ScriptedBackend(fn=lambda r: "ok"), spec, seed=8),
                               list(range(200))))  # fmt: skip
    assert other != first


def test_fault_rates_are_respected_roughly() -> None:
    spec = FaultSpec.parse("error=0.1,wrong=0.3")
    backend = FaultyBackend(ScriptedBackend(fn=lambda r: "ok"), spec, seed=0)
    outcomes = asyncio.run(_drive(backend, list(range(2000))))
    errors = sum(v == "<error>" for v in outcomes.values())
    wrong = sum(v == WRONG_ANSWER for v in outcomes.values())
    assert 150 < errors < 250  # 200 expected; binomial sd ~13
    assert 520 < wrong < 680  # 600 expected; sd ~20
    assert len(backend.injected) == errors + wrong


def test_a_retried_prompt_draws_again() -> None:
    backend = FaultyBackend(ScriptedBackend(fn=lambda r: "ok"), FaultSpec(error=0.5), seed=1)
    kinds = [backend.draw(request(0)) for _ in range(40)]
    assert "error" in kinds and None in kinds


def test_garbage_and_wrong_keep_the_real_call_but_change_its_text() -> None:
    inner = ScriptedBackend(fn=lambda r: "1. Tuesday\n2. Room 4B")
    garbage = FaultyBackend(inner, FaultSpec(garbage=1.0))
    completion = asyncio.run(garbage.complete(request(0)))
    assert "Tuesday" not in completion.text and completion.prompt_tokens > 0
    wrong = FaultyBackend(inner, FaultSpec(wrong=1.0))
    assert asyncio.run(wrong.complete(request(0))).text == f"1. {WRONG_ANSWER}\n2. {WRONG_ANSWER}"
    assert len(inner.calls) == 2


def test_the_model_runs_for_every_call_even_a_faulted_one() -> None:
    inner = ScriptedBackend(fn=lambda r: "ok")
    backend = FaultyBackend(inner, FaultSpec(error=0.5, timeout=0.5))
    for i in range(10):
        with pytest.raises((BackendUnavailable, BackendTimeout)):
            asyncio.run(backend.complete(request(i)))
    assert len(inner.calls) == 10  # the model's state evolves as in the clean run
    assert [f.call for f in backend.injected] == list(range(10))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4417 [doc-1]", WRONG_ANSWER),
        ("3290.", WRONG_ANSWER),
        ("1. Tuesday\n2. Room 4B", f"1. {WRONG_ANSWER}\n2. {WRONG_ANSWER}"),
        ("1. 4494, 2. 9486, 3. 8562", f"1. {WRONG_ANSWER} 2. {WRONG_ANSWER} 3. {WRONG_ANSWER}"),
    ],
)
def test_wrong_answers_keep_the_numbering(text: str, expected: str) -> None:
    assert wrong_text(text) == expected
