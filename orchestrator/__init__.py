"""fanout's coordinator: split a request into isolated sub-agents, fan out, and synthesize."""

from .documents import load_documents
from .graph import Coordinator, RunObserver, Splitter, Strategy
from .logs import configure_logging
from .policy import CallPolicy
from .request import Document, Request
from .result import DocumentAnswer, RunResult, RunUsage, SubResult
from .synthesize import CollectSynthesizer, LLMSynthesizer, Synthesis, Synthesizer

__all__ = [
    "CallPolicy",
    "CollectSynthesizer",
    "Coordinator",
    "Document",
    "DocumentAnswer",
    "LLMSynthesizer",
    "Request",
    "RunObserver",
    "RunResult",
    "RunUsage",
    "Splitter",
    "Strategy",
    "SubResult",
    "Synthesis",
    "Synthesizer",
    "configure_logging",
    "load_documents",
]
