"""Section "fanout": sub-agents against an HTTP server whose answers take a known, fixed time.

With the delay fixed, the ideal wall time is ceil(N / concurrency) x delay, and everything above it
is the client side: the HTTP stack and fanout. Three contenders take turns: the coordinator through
`OpenAIBackend`; the same backend driven by a plain asyncio loop (the floor the HTTP client sets,
without fanout); and a raw httpx client posting to the completions endpoint with a connection pool
sized to the concurrency (does a lighter HTTP path lower that floor?). The framework's own cost is
the coordinator's time over the plain loop's, round by round.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fanout.agents._portal import run_sync
from fanout.agents._prompts import render_completion, stop_sequences
from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.openai import OpenAIBackend
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy

from .baseline import plain_gather
from .loopback import LoopbackServer
from .section import Section
from .timing import median, race, ratios, spread
from .workload import bench_prompts, bench_request

__all__ = ["FanoutSection", "measure_fanout"]


class FanoutSection(Section):
    """How close concurrent sub-agents come to the ideal wall time against a fixed-delay server."""

    n: int
    """Sub-agents per run."""
    max_concurrency: int
    """Calls in flight at once."""
    delay_s: float
    """The server's fixed answer delay."""
    repeats: int
    """Timed rounds (after one warm-up round)."""
    ideal_s: float
    """ceil(n / max_concurrency) x delay_s."""
    wall_s: float
    """Median wall time of a whole coordinator run."""
    ratio_to_client: float
    """Median over rounds of coordinator time / plain-loop time: the framework's own cost."""
    ratio_to_client_spread: tuple[float, float]
    """Lowest and highest per-round value of that ratio."""
    ratio_to_ideal: float
    """wall_s / ideal_s."""
    client_wall_s: float
    """Median wall time of a plain asyncio loop over the same `OpenAIBackend`."""
    httpx_wall_s: float
    """Median wall time of a plain asyncio loop posting with raw httpx, pool sized to the concurrency."""
    samples_s: dict[str, list[float]]
    """Every timed run's wall seconds, per contender."""

    def summary(self) -> str:
        """The framework's cost over the plain loop, and both against the ideal."""
        low, high = self.ratio_to_client_spread
        return (
            f"N={self.n}, concurrency {self.max_concurrency}, delay {self.delay_s:g} s: "
            f"coordinator {self.wall_s:.3f} s = {self.ratio_to_client:.3f}x the plain client loop "
            f"(rounds {low:.3f}-{high:.3f}x); vs ideal {self.ideal_s:.3f} s: coordinator "
            f"{self.ratio_to_ideal:.3f}x, plain loop {self.client_wall_s / self.ideal_s:.3f}x, "
            f"raw httpx loop {self.httpx_wall_s / self.ideal_s:.3f}x"
        )


async def _raw_httpx_gather(
    client: Any, prompts: Sequence[Prompt], *, max_tokens: int, max_concurrency: int
) -> list[str]:
    """The completions endpoint through bare httpx: no SDK request building or response models."""
    limiter = asyncio.Semaphore(max_concurrency)

    async def call(prompt: Prompt) -> str:
        body = {
            "model": "loopback",
            "prompt": render_completion(prompt),
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stop": stop_sequences(prompt),
        }
        async with limiter:
            response = await client.post("/completions", json=body)
        response.raise_for_status()
        text: str = response.json()["choices"][0]["text"]
        return text.strip()

    return list(await asyncio.gather(*(call(p) for p in prompts)))


def measure_fanout(
    n: int = 64, *, max_concurrency: int = 16, delay_s: float = 0.25, repeats: int = 5
) -> FanoutSection:
    """The three contenders against a loopback server in a subprocess (off this interpreter's GIL)."""
    import httpx

    prompts = bench_prompts(n)
    request = bench_request(n)
    with LoopbackServer(delay_s) as server:
        backend = OpenAIBackend("loopback", base_url=server.base_url, endpoint="completions")
        policy = CallPolicy(max_concurrency=max_concurrency, timeout_s=max(30.0, 20 * delay_s))
        coordinator = Coordinator(backend, synthesis="collect", policy=policy)
        requests = [CompletionRequest(prompt=p, max_tokens=policy.max_tokens) for p in prompts]
        limits = httpx.Limits(
            max_connections=max_concurrency, max_keepalive_connections=max_concurrency
        )

        async def open_client() -> Any:
            return httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60.0)

        # Everything runs on the portal loop, where the backend's connections live.
        client = run_sync(open_client())

        async def with_coordinator() -> None:
            result = await coordinator.arun(request)
            if not result.ok:
                raise RuntimeError(f"fan-out run failed: {result.failed[0].error}")

        async def with_client() -> None:
            await plain_gather(backend, requests, max_concurrency=max_concurrency)

        async def with_httpx() -> None:
            await _raw_httpx_gather(
                client, prompts, max_tokens=policy.max_tokens, max_concurrency=max_concurrency
            )

        def on_portal(run: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
            return lambda: run_sync(run())

        try:
            samples = race(
                {
                    "coordinator": on_portal(with_coordinator),
                    "client": on_portal(with_client),
                    "httpx": on_portal(with_httpx),
                },
                rounds=repeats,
            )
        finally:
            run_sync(client.aclose())
    ideal = math.ceil(n / max_concurrency) * delay_s
    to_client = ratios(samples["coordinator"], samples["client"])
    wall = median(samples["coordinator"])
    return FanoutSection(
        goal="framework cost <= 1.05x the plain client loop (median of per-round ratios)",
        met=median(to_client) <= 1.05,
        n=n,
        max_concurrency=max_concurrency,
        delay_s=delay_s,
        repeats=repeats,
        ideal_s=ideal,
        wall_s=wall,
        ratio_to_client=median(to_client),
        ratio_to_client_spread=spread(to_client),
        ratio_to_ideal=wall / ideal,
        client_wall_s=median(samples["client"]),
        httpx_wall_s=median(samples["httpx"]),
        samples_s=samples,
    )
