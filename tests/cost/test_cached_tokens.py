"""What was paid: prompt tokens a prefix cache served are counted apart, from every backend."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from fanout.agents._prices import PriceTable
from fanout.agents.backend import CompletionRequest, Prices, Prompt, Usage
from fanout.agents.openai import OpenAIBackend
from fanout.agents.testing import ScriptedBackend
from fanout.orchestrator import CallPolicy, Coordinator, Document, Request
from tests.conftest import MODELS_BODY, StubHTTPServer, json_body

DOCS = tuple(Document(id=f"d{i}.md", text=f"Note {i}: the code is {1000 + i}.") for i in range(4))


def test_usage_adds_cached_tokens_and_knows_what_was_evaluated() -> None:
    one = Usage(prompt_tokens=100, cached_prompt_tokens=60, completion_tokens=5, calls=1)
    two = Usage(prompt_tokens=50, cached_prompt_tokens=0, completion_tokens=5, calls=1)
    both = one + two
    assert both.cached_prompt_tokens == 60 and both.uncached_prompt_tokens == 90


def test_cached_prompt_tokens_cost_the_cached_price_when_the_table_has_one() -> None:
    full = Prices(input_per_mtok=1.0, output_per_mtok=2.0)
    cached = Prices(input_per_mtok=1.0, output_per_mtok=2.0, cached_input_per_mtok=0.25)
    assert full.cost(1_000_000, 0, 800_000) == pytest.approx(1.0)  # no discount known
    assert cached.cost(1_000_000, 0, 800_000) == pytest.approx(0.2 + 0.2)
    table = PriceTable(models={"m": cached})
    assert table.cost("m", 1_000_000, 1_000_000, 1_000_000) == pytest.approx(0.25 + 2.0)


def test_a_run_counts_the_prefix_its_sub_agents_share() -> None:
    """Sub-agents of one question share instruction and examples: a prefix cache serves them."""
    backend = ScriptedBackend(fn=lambda r: "not found", prefix_cache=True)
    result = Coordinator(backend, policy=CallPolicy(max_concurrency=1), synthesis="collect").run(
        Request(documents=DOCS, question="What is the code of note 2?")
    )
    usage = result.usage
    assert usage.cached_prompt_tokens > 0
    assert usage.cached_prompt_tokens == sum(
        r.usage.cached_prompt_tokens for r in result.sub_results
    )
    # the first call found nothing cached; every later one reused the shared part
    cached = [r.usage.cached_prompt_tokens for r in result.sub_results]
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])


def test_an_openai_compatible_servers_cached_tokens_are_read_and_priced() -> None:
    def server(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "GET":
            return 200, MODELS_BODY
        return 200, json_body(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": 2000,
                    "completion_tokens": 10,
                    "total_tokens": 2010,
                    "prompt_tokens_details": {"cached_tokens": 1536},
                },
            }
        )

    async def call(backend: OpenAIBackend) -> Any:
        try:
            return await backend.complete(
                CompletionRequest(prompt=Prompt(instruction="", task="Q", context="word " * 2000))
            )
        finally:
            await backend.aclose()

    with StubHTTPServer(server) as stub:
        backend = OpenAIBackend(
            "m", base_url=stub.base_url, api_key="k", schema_format="json_schema"
        )
        backend.prices = Prices(input_per_mtok=1.0, cached_input_per_mtok=0.5)
        completion = asyncio.run(call(backend))
    assert completion.cached_prompt_tokens == 1536
    assert completion.cost_usd == pytest.approx((464 * 1.0 + 1536 * 0.5) / 1e6)


def test_an_eval_reports_uncached_prompt_tokens_per_question() -> None:
    from fanout.evals.metrics import cell_metrics
    from fanout.evals.runner import run_group
    from fanout.evals.strategies import make_strategy
    from fanout.evals.suites import KeyValueSuite

    group = KeyValueSuite(doc_tokens=60).group(3, 0, seed=0)
    backend = ScriptedBackend(fn=lambda r: "not found", prefix_cache=True)
    policy = CallPolicy(max_attempts=1, max_tokens=64, max_concurrency=1)
    record = asyncio.run(run_group(make_strategy("isolated"), group, backend, policy, n=3, index=0))
    (cell,) = cell_metrics([record])
    assert record.cached_prompt_tokens > 0
    assert cell.uncached_prompt_tokens_per_question == pytest.approx(
        (record.prompt_tokens - record.cached_prompt_tokens) / 3
    )
    assert (
        json.loads(record.model_dump_json())["cached_prompt_tokens"] == record.cached_prompt_tokens
    )


@pytest.mark.integration
def test_llama_cpp_reports_the_prefix_it_kept(llama_backend: Any) -> None:
    """The real model: a second prompt sharing the first one's opening is partly served from cache."""
    shared = "The harbour office keeps a ledger of every ship that docks. " * 6

    async def two() -> list[Any]:
        out = []
        for tail in ("Which ship docked first?", "Who keeps the ledger?"):
            out.append(
                await llama_backend.complete(
                    CompletionRequest(
                        prompt=Prompt(instruction=shared, context="", task=tail), max_tokens=4
                    )
                )
            )
        return out

    _, second = asyncio.run(two())
    assert second.cached_prompt_tokens >= 60  # the shared opening, in tokens
    assert second.cached_prompt_tokens < second.prompt_tokens
