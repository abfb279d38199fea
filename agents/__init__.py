"""fanout's model backends: one protocol, in-process llama.cpp, OpenAI-compatible, LangChain, a fake.

Backends import their client library lazily where it is heavy, so ``import fanout.agents`` stays cheap.
"""

from typing import TYPE_CHECKING, Any

from .backend import Backend, Completion, CompletionRequest, Example, Prices, Prompt, Usage
from .errors import BackendClosed, BackendError, FanoutError, UserError
from .testing import ScriptedBackend

if TYPE_CHECKING:
    from .langchain import LangChainBackend
    from .llama_cpp import LlamaCppBackend
    from .openai import OpenAIBackend

__all__ = [
    "Backend",
    "BackendClosed",
    "BackendError",
    "Completion",
    "CompletionRequest",
    "Example",
    "FanoutError",
    "LangChainBackend",
    "LlamaCppBackend",
    "OpenAIBackend",
    "Prices",
    "Prompt",
    "ScriptedBackend",
    "Usage",
    "UserError",
]

_LAZY = {
    "LlamaCppBackend": ".llama_cpp",
    "OpenAIBackend": ".openai",
    "LangChainBackend": ".langchain",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'fanout.agents' has no attribute {name!r}")
