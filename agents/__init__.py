"""fanout's agents: the sub-agent (what one agent is, and fanout's own) and the models it calls.

Backends: one protocol, in-process llama.cpp, OpenAI-compatible, LangChain, and a scripted fake.

Backends import their client library lazily where it is heavy, so ``import fanout.agents`` stays cheap.
"""

from typing import TYPE_CHECKING, Any

from .backend import Backend, Completion, CompletionRequest, Example, Prices, Prompt, Usage
from .errors import BackendClosed, BackendError, FanoutError, UserError
from .logs import configure_logging
from .subagent import (
    AgentContext,
    Finding,
    ModelAccess,
    SubAgentOutput,
    answer_task,
    answer_with_json,
    cooperative,
    graph_sub_agent,
    structured_answerer,
)
from .task import SubTask
from .testing import ScriptedBackend

if TYPE_CHECKING:
    from .fallback import FallbackBackend
    from .langchain import LangChainBackend
    from .llama_cpp import LlamaCppBackend
    from .openai import OpenAIBackend

__all__ = [
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
    "SubAgentOutput",
    "SubTask",
    "Usage",
    "UserError",
    "answer_task",
    "answer_with_json",
    "configure_logging",
    "cooperative",
    "graph_sub_agent",
    "structured_answerer",
]

_LAZY = {
    "FallbackBackend": ".fallback",
    "LlamaCppBackend": ".llama_cpp",
    "OpenAIBackend": ".openai",
    "LangChainBackend": ".langchain",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'fanout.agents' has no attribute {name!r}")
