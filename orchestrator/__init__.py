"""fanout's coordinator: split a request into isolated sub-agents, fan out, and synthesize."""

from .graph import Coordinator, Splitter, Strategy
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
    "RunResult",
    "RunUsage",
    "Splitter",
    "Strategy",
    "SubResult",
    "Synthesis",
    "Synthesizer",
]
