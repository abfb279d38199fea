"""The command-line options ``fanout run`` and ``fanout eval`` share: one definition of each.

Each option is a typed alias carrying its flag, help, allowed values and range; its default is the
constant beside it, taken from the library's own default where there is one (`CallPolicy`). A
command declares ``n_ctx: NCtx = N_CTX`` and passes what it received to `ModelOptions` and
`CallOptions`, the one path from option values to a backend and a call policy. Checks of a single
value (a range, a choice, a finite number) happen while the command line is parsed, so a bad value is
refused before anything loads; errors name the flag.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

import typer

from fanout.agents import _factory as factory
from fanout.agents._factory import BackendKind
from fanout.agents._portal import run_sync
from fanout.agents.backend import Backend, release
from fanout.agents.errors import UserError

from .auto import Objective, StrategyChooser
from .policy import CallPolicy
from .split import DEFAULT_OVERLAP_TOKENS

__all__ = [
    "BACKEND",
    "ENDPOINT",
    "MAX_CONCURRENCY",
    "MAX_TOKENS",
    "N_CTX",
    "N_GPU_LAYERS",
    "OBJECTIVE",
    "PARALLEL",
    "RETRIES",
    "TIMEOUT",
    "BackendOption",
    "BaseUrl",
    "CallOptions",
    "ChunkTokens",
    "ContextWindow",
    "Endpoint",
    "EndpointOption",
    "MaxConcurrency",
    "MaxTokens",
    "MinAccuracy",
    "Model",
    "ModelOptions",
    "NCtx",
    "NGpuLayers",
    "ObjectiveOption",
    "Parallel",
    "PricesFile",
    "ProfileFile",
    "Retries",
    "Threads",
    "Timeout",
    "TopK",
    "auto_chooser",
    "check_chunk_tokens",
    "parse_parallel",
    "parse_seconds",
]

Endpoint = Literal["chat", "completions"]

_POLICY = CallPolicy()

BACKEND: BackendKind = "llama"
ENDPOINT: Endpoint = "chat"
N_CTX: int | None = None
"""The model's own trained context (read from the GGUF): what a model can read is the model's to
say, not a fixed number's (4,096 cut a 5k-token document the 32k-context Qwen models read whole)."""
N_GPU_LAYERS = 0
PARALLEL = "auto"
MAX_CONCURRENCY = _POLICY.max_concurrency
TIMEOUT = _POLICY.timeout_s or 300.0
RETRIES = _POLICY.max_attempts - 1
MAX_TOKENS = _POLICY.max_tokens
OBJECTIVE: Objective = "accuracy"


def parse_seconds(text: str) -> float:
    """A positive, finite number of seconds (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise typer.BadParameter(f"must be a positive, finite number of seconds, not {text}")
    return value


def parse_parallel(text: str | int) -> int | Literal["auto"]:
    """``auto`` or a whole number of at least 1."""
    text = str(text)
    if text.strip() == "auto":
        return "auto"
    if not text.strip().isdigit() or int(text) < 1:
        raise typer.BadParameter(f"must be a number of at least 1 or auto, not '{text}'")
    return int(text)


# -- the backend ---------------------------------------------------------------------------------

BackendOption = Annotated[
    BackendKind,
    typer.Option(
        "--backend", help="llama: a GGUF in this process; openai: an OpenAI-compatible server."
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="llama: a GGUF path or a model's name: gemma3-270m (the default), smollm2, "
        "qwen2.5-coder-0.5b, qwen2.5-coder-1.5b (the last two: fanout models pull NAME first). "
        "openai: the model name (default $OPENAI_MODEL).",
    ),
]
BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="openai: API root, e.g. http://127.0.0.1:8080/v1; several, comma-separated, spread "
        "calls over a fleet (default $OPENAI_BASE_URL, then OpenAI).",
    ),
]
EndpointOption = Annotated[
    Endpoint,
    typer.Option("--endpoint", help="openai: chat, or completions for base models."),
]
NGpuLayers = Annotated[
    int, typer.Option("--n-gpu-layers", min=-1, help="llama: layers on the GPU (-1 all).")
]
NCtx = Annotated[
    int | None,
    typer.Option(
        "--n-ctx",
        min=1,
        help="llama: context window in tokens (default: the context the model was trained with).",
    ),
]
Threads = Annotated[
    int | None, typer.Option("--threads", min=1, help="llama: CPU threads (default: every core).")
]
PricesFile = Annotated[
    str | None,
    typer.Option(
        "--prices",
        metavar="FILE",
        help="Price table (JSON/TOML): model -> USD per Mtok; costs are shown only with one.",
    ),
]
Parallel = Annotated[
    str,
    typer.Option(
        "--parallel",
        callback=lambda value: str(parse_parallel(value)),
        metavar="N|auto",
        help="llama: sub-agent calls decoded together in one batch: N, or auto (batch only where "
        "measured faster than one by one).",
    ),
]
ContextWindow = Annotated[
    int | None,
    typer.Option(
        "--context-window", min=1, help="openai: the model's context in tokens (enables chunking)."
    ),
]

ChunkTokens = Annotated[
    int | None,
    typer.Option(
        "--chunk-tokens",
        min=1,
        metavar="N",
        help="Largest document chunk per sub-agent (default: fits the context).",
    ),
]


def check_chunk_tokens(chunk_tokens: int | None) -> None:
    """A chunk must hold twice the overlap consecutive chunks share."""
    overlap = DEFAULT_OVERLAP_TOKENS
    if chunk_tokens is not None and chunk_tokens < 2 * overlap:
        raise UserError(
            f"--chunk-tokens must be at least {2 * overlap}, not {chunk_tokens} "
            f"(consecutive chunks share {overlap} tokens)"
        )


TopK = Annotated[
    int | None,
    typer.Option(
        "--top-k",
        min=1,
        metavar="K",
        help="Ask only the K chunks that best match the question (a BM25 pre-filter; "
        "run: off unless given; eval: the isolated-topk strategy, 5 unless given).",
    ),
]

# -- every model call ----------------------------------------------------------------------------

MaxConcurrency = Annotated[
    int, typer.Option("--max-concurrency", min=1, help="Model calls in flight at once.")
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout", parser=parse_seconds, metavar="SECONDS", help="Deadline of one call attempt."
    ),
]
Retries = Annotated[
    int,
    typer.Option(
        "--retries", min=0, help="Retries of a call's transient errors (timeouts, 429, 5xx)."
    ),
]
MaxTokens = Annotated[
    int,
    typer.Option(
        "--max-tokens",
        min=1,
        help="Completion budget per call (calls answering several questions get more).",
    ),
]


# -- strategy auto -------------------------------------------------------------------------------

ProfileFile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        metavar="FILE",
        help="auto: the profile.json fanout eval wrote for this model (its measurements choose).",
    ),
]
ObjectiveOption = Annotated[
    Objective,
    typer.Option(
        "--objective",
        help="auto: the most accurate (ties to the cheaper), or the cheapest expected to reach "
        "--min-accuracy.",
    ),
]
MinAccuracy = Annotated[
    float | None,
    typer.Option(
        "--min-accuracy",
        min=0.0,
        max=1.0,
        metavar="FRACTION",
        help="auto with --objective cost: the accuracy floor, 0 to 1.",
    ),
]


def auto_chooser(
    auto: bool, profile: str | None, objective: Objective, min_accuracy: float | None
) -> StrategyChooser | None:
    """The chooser of strategy auto, its profile read before any model loads; None without auto.

    Raises:
        UserError: a bad or unreadable profile, a cost objective without a floor, or these
            options given without strategy auto.
    """
    if auto:
        return StrategyChooser.create(profile, objective=objective, min_accuracy=min_accuracy)
    if profile is not None or objective != OBJECTIVE or min_accuracy is not None:
        raise UserError("--profile, --objective and --min-accuracy go with the strategy auto")
    return None


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """The backend options as a command received them."""

    backend: BackendKind = BACKEND
    """Which kind of backend."""
    model: str | None = None
    """GGUF path or embedded model name (llama), model name (openai)."""
    base_url: str | None = None
    """API root(s) of an OpenAI-compatible server (openai)."""
    endpoint: Endpoint = ENDPOINT
    """Chat or completions (openai)."""
    n_gpu_layers: int = N_GPU_LAYERS
    """Layers offloaded to the GPU (llama)."""
    n_ctx: int | None = N_CTX
    """Context window (llama); None: the model's trained context."""
    threads: int | None = None
    """CPU threads; None uses every core (llama)."""
    parallel: int | str = PARALLEL
    """A number, or "auto"."""
    """Calls decoded together in one batch (llama)."""
    context_window: int | None = None
    """The served model's context, when known (openai)."""

    @contextlib.contextmanager
    def open_backend(self, *, timeout_s: float | None = None) -> Iterator[Backend]:
        """The backend for the length of a ``with`` block, closed at its end.

        `timeout_s` bounds a remote backend's every network wait, its start-up check included.

        Raises:
            UserError: bad model, unknown kind, or (checked now) an unreachable server.
        """
        backend = factory.make_backend(
            self.backend,
            model=self.model,
            base_url=self.base_url,
            endpoint=self.endpoint,
            n_gpu_layers=self.n_gpu_layers,
            n_ctx=self.n_ctx,
            n_threads=self.threads,
            context_window=self.context_window,
            n_parallel=parse_parallel(self.parallel),
            timeout_s=timeout_s,
        )
        try:
            check = getattr(backend, "check", None)
            if check is not None:
                run_sync(check())
            yield backend
        finally:
            run_sync(release(backend))


@dataclass(frozen=True, kw_only=True)
class CallOptions:
    """The call-policy options as a command received them."""

    max_concurrency: int = MAX_CONCURRENCY
    """Model calls in flight at once."""
    timeout: float = TIMEOUT
    """Seconds per call attempt."""
    retries: int = RETRIES
    """Retries of transient errors per call."""
    max_tokens: int = MAX_TOKENS
    """Completion budget per call."""

    def policy(self, *, parallel: int | str = PARALLEL) -> CallPolicy:
        """The `CallPolicy`; a batch of `parallel` can only fill with as many calls in flight."""
        sequences = parse_parallel(parallel)
        return CallPolicy(
            max_concurrency=max(self.max_concurrency, 1 if sequences == "auto" else sequences),
            timeout_s=self.timeout,
            max_attempts=self.retries + 1,
            max_tokens=self.max_tokens,
        )
