"""fanout's coordinator: split a request into isolated sub-agents, fan out, and synthesize.

The stages (`Stages`: split, sub-agent, reduce, rank, synthesize, check citations) are small
protocols with defaults; `GraphKit` builds LangGraph graphs from them; `Coordinator` is the preset.
"""

from .auto import StrategyChoice, StrategyChooser
from .checkpoint import Checkpoint, open_checkpoint
from .context import RunContext, RunHooks
from .coordinator import Coordinator, StrategyName, SynthesisMode
from .documents import load_documents
from .errors import RunFailed
from .kit import GraphKit
from .policy import CallPolicy, FailurePolicy
from .profile import Profile, ProfileRow
from .request import Document, Request
from .result import DocumentAnswer, RunResult, RunUsage, SubResult
from .split import DocumentSplitter, TopKSplitter
from .stages import (
    ChunkReducer,
    CitationChecker,
    Ranker,
    Reducer,
    Splitter,
    Stages,
    SubAgent,
    Synthesizer,
    check_answer,
    rank_findings,
)
from .state import FanoutInput, FanoutOutput, FanoutState, RunPlan
from .store import MemoryResultStore, ResultStore, SqliteResultStore
from .synthesize import CollectSynthesizer, LLMSynthesizer, Synthesis

__all__ = [
    "CallPolicy",
    "Checkpoint",
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
    "GraphKit",
    "LLMSynthesizer",
    "MemoryResultStore",
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
    "Synthesis",
    "SynthesisMode",
    "Synthesizer",
    "TopKSplitter",
    "check_answer",
    "load_documents",
    "open_checkpoint",
    "rank_findings",
]
