"""fanout evals: isolated vs monolithic, measured.

``evaluate(backend, suite="keyvalue", strategies=("isolated", "monolithic", "mti"))`` sweeps N and
returns an `EvalReport`; ``fanout eval`` is the same from the command line. Names are imported on
first use, so ``import evals`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asks import Answer, Ask, EvalStrategy
    from .baselines import BatchStrategy, ChainStrategy, SequentialStrategy
    from .crossover import Crossover
    from .faults import FaultSpec, FaultyBackend
    from .metrics import CellMetrics, FaultMetrics, PriceTable, wilson_interval
    from .records import AnswerRecord, EvalConfig, EvalResults, GroupRecord
    from .report import EvalReport
    from .runner import arun_sweep, evaluate
    from .strategies import (
        CoordinatorStrategy,
        IsolatedStrategy,
        MonolithicStrategy,
    )
    from .suites import Group, Question, Suite, make_suite

__all__ = [
    "Answer",
    "AnswerRecord",
    "Ask",
    "BatchStrategy",
    "CellMetrics",
    "ChainStrategy",
    "CoordinatorStrategy",
    "Crossover",
    "EvalConfig",
    "EvalReport",
    "EvalResults",
    "EvalStrategy",
    "FaultMetrics",
    "FaultSpec",
    "FaultyBackend",
    "Group",
    "GroupRecord",
    "IsolatedStrategy",
    "MonolithicStrategy",
    "PriceTable",
    "Question",
    "SequentialStrategy",
    "Suite",
    "arun_sweep",
    "evaluate",
    "make_suite",
    "wilson_interval",
]

_HOMES = {
    "FaultSpec": ".faults",
    "FaultyBackend": ".faults",
    "CellMetrics": ".metrics",
    "Crossover": ".crossover",
    "FaultMetrics": ".metrics",
    "PriceTable": ".metrics",
    "wilson_interval": ".metrics",
    "AnswerRecord": ".records",
    "EvalConfig": ".records",
    "EvalResults": ".records",
    "GroupRecord": ".records",
    "EvalReport": ".report",
    "arun_sweep": ".runner",
    "evaluate": ".runner",
    "Answer": ".asks",
    "BatchStrategy": ".baselines",
    "ChainStrategy": ".baselines",
    "IsolatedStrategy": ".strategies",
    "MonolithicStrategy": ".strategies",
    "SequentialStrategy": ".baselines",
    "Ask": ".asks",
    "CoordinatorStrategy": ".strategies",
    "EvalStrategy": ".asks",
    "Group": ".suites",
    "Question": ".suites",
    "Suite": ".suites",
    "make_suite": ".suites",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'evals' has no attribute {name!r}")
    return getattr(import_module(home, __name__), name)
