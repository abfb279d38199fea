"""fanout: answer multi-document and multi-task requests with isolated sub-agents, and measure it.

The names most users need are importable from here; the packages below hold the rest, each with
its own ``__all__``: `fanout.agents` (the sub-agent and the models it calls), `fanout.orchestrator`
(the stages, the graph kit and the `Coordinator` preset) and `fanout.evals` (strategy comparisons
and benchmarks). Heavy modules load on first use, so ``import fanout`` stays cheap.
"""

from __future__ import annotations

import logging
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("fanout")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# A library logs but never decides where its logs go: silent unless the application (or the CLI,
# through `configure_logging`) gives the "fanout" logger a handler.
logging.getLogger("fanout").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from fanout.agents import (
        AgentContext,
        Backend,
        BackendClosed,
        BackendError,
        Completion,
        CompletionRequest,
        Example,
        FallbackBackend,
        FanoutError,
        Finding,
        LangChainBackend,
        LlamaCppBackend,
        ModelAccess,
        OpenAIBackend,
        Prices,
        Prompt,
        ScriptedBackend,
        SubTask,
        Usage,
        UserError,
        configure_logging,
        cooperative,
        graph_sub_agent,
    )
    from fanout.evals import (
        EvalReport,
        evaluate,
    )
    from fanout.orchestrator import (
        CallPolicy,
        Coordinator,
        Document,
        DocumentAnswer,
        FanoutState,
        GraphKit,
        Profile,
        Request,
        RunContext,
        RunFailed,
        RunHooks,
        RunPlan,
        RunResult,
        Stages,
        StrategyChoice,
        SubResult,
        load_documents,
        open_checkpoint,
        rank_findings,
    )

__all__ = [
    "AgentContext",
    "Backend",
    "BackendClosed",
    "BackendError",
    "CallPolicy",
    "Completion",
    "CompletionRequest",
    "Coordinator",
    "Document",
    "DocumentAnswer",
    "EvalReport",
    "Example",
    "FallbackBackend",
    "FanoutError",
    "FanoutState",
    "Finding",
    "GraphKit",
    "LangChainBackend",
    "LlamaCppBackend",
    "ModelAccess",
    "OpenAIBackend",
    "Prices",
    "Profile",
    "Prompt",
    "Request",
    "RunContext",
    "RunFailed",
    "RunHooks",
    "RunPlan",
    "RunResult",
    "ScriptedBackend",
    "Stages",
    "StrategyChoice",
    "SubResult",
    "SubTask",
    "Usage",
    "UserError",
    "__version__",
    "configure_logging",
    "cooperative",
    "evaluate",
    "graph_sub_agent",
    "load_documents",
    "open_checkpoint",
    "rank_findings",
]

_HOMES = {
    **dict.fromkeys(
        (
            "AgentContext",
            "Backend",
            "BackendClosed",
            "BackendError",
            "Completion",
            "CompletionRequest",
            "Example",
            "FallbackBackend",
            "FanoutError",
            "Finding",
            "LangChainBackend",
            "LlamaCppBackend",
            "ModelAccess",
            "OpenAIBackend",
            "Prices",
            "Prompt",
            "ScriptedBackend",
            "SubTask",
            "Usage",
            "UserError",
            "configure_logging",
            "cooperative",
            "graph_sub_agent",
        ),
        "fanout.agents",
    ),
    **dict.fromkeys(
        (
            "CallPolicy",
            "Coordinator",
            "Document",
            "DocumentAnswer",
            "FanoutState",
            "GraphKit",
            "Profile",
            "Request",
            "RunContext",
            "RunFailed",
            "RunHooks",
            "RunPlan",
            "RunResult",
            "Stages",
            "StrategyChoice",
            "SubResult",
            "load_documents",
            "open_checkpoint",
            "rank_findings",
        ),
        "fanout.orchestrator",
    ),
    **dict.fromkeys(
        (
            "EvalReport",
            "evaluate",
        ),
        "fanout.evals",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'fanout' has no attribute {name!r}")
    return getattr(import_module(home), name)
