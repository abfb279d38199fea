"""fanout's coordinator: split a request into isolated sub-agents, fan out, and synthesize."""

from .auto import StrategyChooser, StrategyPlan
from .coordinator import Coordinator, RunObserver
from .documents import load_documents
from .errors import RunFailed
from .nodes import Splitter, Strategy
from .policy import CallPolicy, FailurePolicy
from .profile import Profile, ProfileRow
from .request import Document, Request
from .result import DocumentAnswer, RunResult, RunUsage, SubResult
from .store import MemoryResultStore, ResultStore, SqliteResultStore
from .subagent import (
    ModelAccess,
    SubAgent,
    answer_task,
    cooperative,
    graph_sub_agent,
    structured_answerer,
)
from .synthesize import CollectSynthesizer, LLMSynthesizer, Synthesis, Synthesizer
from .task import SubTask

__all__ = [
    "CallPolicy",
    "CollectSynthesizer",
    "Coordinator",
    "Document",
    "DocumentAnswer",
    "FailurePolicy",
    "LLMSynthesizer",
    "MemoryResultStore",
    "ModelAccess",
    "Profile",
    "ProfileRow",
    "Request",
    "ResultStore",
    "RunFailed",
    "RunObserver",
    "RunResult",
    "RunUsage",
    "Splitter",
    "SqliteResultStore",
    "Strategy",
    "StrategyChooser",
    "StrategyPlan",
    "SubAgent",
    "SubResult",
    "SubTask",
    "Synthesis",
    "Synthesizer",
    "answer_task",
    "cooperative",
    "graph_sub_agent",
    "load_documents",
    "structured_answerer",
]
