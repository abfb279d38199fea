"""fanout's coordinator: split a request into isolated sub-agents, fan out, and synthesize.

The stages (`Stages`: split, sub-agent, reduce, rank, synthesize, check citations) are small
protocols with defaults; `GraphKit` builds LangGraph graphs from them; `Coordinator` is the preset.
"""

from .auto import StrategyChoice, StrategyChooser
from .context import ModelAccess, RunContext, RunHooks
from .coordinator import Coordinator, StrategyName, SynthesisMode
from .documents import load_documents
from .errors import RunFailed
from .kit import GraphKit
from .policy import CallPolicy, FailurePolicy
from .profile import Profile, ProfileRow
from .request import Document, Request
from .result import DocumentAnswer, RunResult, RunUsage, SubResult
from .stages import (
    ChunkReducer,
    CitationChecker,
    DocumentSplitter,
    Ranker,
    Reducer,
    Splitter,
    Stages,
    Synthesizer,
    TopKSplitter,
    check_answer,
    rank_findings,
)
from .state import FanoutInput, FanoutOutput, FanoutState, RunPlan
from .store import MemoryResultStore, ResultStore, SqliteResultStore
from .subagent import (
    Finding,
    SubAgent,
    answer_task,
    answer_with_json,
    cooperative,
    graph_sub_agent,
    structured_answerer,
)
from .synthesize import CollectSynthesizer, LLMSynthesizer, Synthesis
from .task import SubTask

__all__ = [
    "CallPolicy",
    "ChunkReducer",
    "CitationChecker",
    "CollectSynthesizer",
    "Coordinator",
    "Document",
    "DocumentAnswer",
    "DocumentSplitter",
    "FailurePolicy",
    "FanoutInput",
    "FanoutOutput",
    "FanoutState",
    "Finding",
    "GraphKit",
    "LLMSynthesizer",
    "MemoryResultStore",
    "ModelAccess",
    "Profile",
    "ProfileRow",
    "Ranker",
    "Reducer",
    "Request",
    "ResultStore",
    "RunContext",
    "RunFailed",
    "RunHooks",
    "RunPlan",
    "RunResult",
    "RunUsage",
    "Splitter",
    "SqliteResultStore",
    "Stages",
    "StrategyChoice",
    "StrategyChooser",
    "StrategyName",
    "SubAgent",
    "SubResult",
    "SubTask",
    "Synthesis",
    "SynthesisMode",
    "Synthesizer",
    "TopKSplitter",
    "answer_task",
    "answer_with_json",
    "check_answer",
    "cooperative",
    "graph_sub_agent",
    "load_documents",
    "rank_findings",
    "structured_answerer",
]
