"""fanout's coordinator: split a request into isolated sub-agents, fan out, and synthesize."""

from .documents import load_documents
from .errors import RunFailed
from .graph import Coordinator, RunObserver, Splitter, Strategy
from .logs import configure_logging
from .policy import CallPolicy, FailurePolicy
from .request import Document, Request
from .result import DocumentAnswer, RunResult, RunUsage, SubResult
from .store import MemoryResultStore, ResultStore, SqliteResultStore
from .synthesize import CollectSynthesizer, LLMSynthesizer, Synthesis, Synthesizer

__all__ = [
    "CallPolicy",
    "CollectSynthesizer",
    "Coordinator",
    "Document",
    "DocumentAnswer",
    "FailurePolicy",
    "LLMSynthesizer",
    "MemoryResultStore",
    "Request",
    "ResultStore",
    "RunFailed",
    "RunObserver",
    "RunResult",
    "RunUsage",
    "Splitter",
    "SqliteResultStore",
    "Strategy",
    "SubResult",
    "Synthesis",
    "Synthesizer",
    "configure_logging",
    "load_documents",
]
