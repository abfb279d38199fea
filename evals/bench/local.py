"""Section "local": the coordinator's throughput on the in-process model vs a plain llama-cpp loop.

Both answer the same prompts greedily, so their work is identical (checked: same text for every
prompt). They take turns for several rounds; the verdict is the median of the per-round ratios, so
one round slowed by another process cannot flip it, and the spread shows how far rounds strayed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fanout.agents.backend import Backend, Completion, CompletionRequest, PromptStyle
from fanout.orchestrator.coordinator import Coordinator
from fanout.orchestrator.policy import CallPolicy

from .baseline import plain_llama_loop
from .section import Section
from .timing import median, race, ratios, spread
from .workload import bench_prompts, bench_request

if TYPE_CHECKING:
    from fanout.agents.llama_cpp import LlamaCppBackend

__all__ = ["LocalSection", "measure_local_throughput"]


class LocalSection(Section):
    """The coordinator's throughput on the in-process model vs a plain llama-cpp-python loop."""

    model: str
    """The GGUF file."""
    n: int
    """Sub-agents (prompts) per run."""
    max_tokens: int
    """Completion budget per call."""
    repeats: int
    """Timed rounds (after one warm-up round)."""
    ratio: float
    """Median over rounds of plain-loop time / coordinator time: the coordinator's throughput
    relative to the plain loop."""
    ratio_spread: tuple[float, float]
    """Lowest and highest per-round ratio."""
    coordinator_s: float
    """Median wall time of a coordinator run."""
    plain_s: float
    """Median wall time of the plain loop over the same prompts."""
    outputs_match: bool
    """Both produced the same text for every prompt (temperature 0): the work was identical."""
    samples_s: dict[str, list[float]]
    """Every timed run's wall seconds, per contender."""

    def summary(self) -> str:
        """The median ratio, its spread and both median times."""
        same = "identical outputs" if self.outputs_match else "OUTPUTS DIFFER"
        low, high = self.ratio_spread
        return (
            f"N={self.n}, max_tokens {self.max_tokens}: {self.ratio:.3f}x the plain loop's "
            f"throughput (median of {self.repeats} rounds, {low:.3f}-{high:.3f}x; coordinator "
            f"{self.coordinator_s:.2f} s, plain {self.plain_s:.2f} s; {same})"
        )


class _Recording:
    """The backend, passing every call through and keeping the completion texts it returned."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = backend.name
        self.prompt_style: PromptStyle = backend.prompt_style
        self.context_window = backend.context_window
        self.texts: dict[str, str] = {}

    def count_tokens(self, text: str) -> int:
        return self.backend.count_tokens(text)

    async def complete(self, request: CompletionRequest) -> Completion:
        completion = await self.backend.complete(request)
        self.texts[request.tags.get("document_id", "")] = completion.text
        return completion


def measure_local_throughput(
    n: int = 16,
    *,
    max_tokens: int = 32,
    repeats: int = 5,
    backend: LlamaCppBackend | None = None,
) -> LocalSection:
    """The coordinator on the embedded model vs a plain llama-cpp-python loop, same prompts."""
    from fanout.agents.llama_cpp import LlamaCppBackend

    backend = backend or LlamaCppBackend.default()
    recording = _Recording(backend)
    policy = CallPolicy(max_concurrency=16, max_tokens=max_tokens)
    coordinator = Coordinator(recording, synthesis="collect", policy=policy)
    request = bench_request(n)
    prompts = bench_prompts(n)
    plain_texts: list[str] = []

    def coordinated() -> None:
        result = coordinator.run(request)
        if not result.ok:
            raise RuntimeError(f"coordinator run failed: {result.failed[0].error}")

    def plain() -> None:
        with backend.lock:
            plain_texts[:] = plain_llama_loop(backend.llama, prompts, max_tokens=max_tokens)

    samples = race({"coordinator": coordinated, "plain": plain}, rounds=repeats)
    per_round = ratios(samples["plain"], samples["coordinator"])
    ratio = median(per_round)
    coordinator_texts = [recording.texts.get(d.id) for d in request.documents]
    return LocalSection(
        goal=">= 0.95x the plain llama-cpp-python loop's throughput (median of per-round ratios)",
        met=ratio >= 0.95,
        model=backend.name,
        n=n,
        max_tokens=max_tokens,
        repeats=repeats,
        ratio=ratio,
        ratio_spread=spread(per_round),
        coordinator_s=median(samples["coordinator"]),
        plain_s=median(samples["plain"]),
        outputs_match=coordinator_texts == plain_texts,
        samples_s=samples,
    )
