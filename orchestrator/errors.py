"""Errors the coordinator raises; the shared bases live in `fanout.agents.errors`.

FanoutError (agents.errors)
├── UserError (agents.errors)      bad input or option: one line in the CLI, exit 2
│   ├── RunInUse                   another live process holds this run id's lease
│   └── CheckpointError            the checkpoint cannot be read or written (read-only, disk full,
│                                  damaged); what it held before stays
├── RunFailed                      the failure policy stopped the run; partial results kept
├── SubAgentTimeout                a sub-agent overran its deadline outside model calls (caught
│                                  into that sub-agent's failed SubResult)
├── SubAgentCancelled              a sub-agent's own code raised CancelledError (fanout did not
│                                  cancel it): that sub-agent's failure, not the run's
└── BudgetExceeded                 a call would have passed the run's budget and was not made
                                   (caught into that sub-agent's failed SubResult: a resume with
                                   a larger budget runs it)
"""

from __future__ import annotations

from fanout.agents.errors import FanoutError, UserError

from .result import SubResult

__all__ = [
    "BudgetExceeded",
    "CheckpointError",
    "FanoutError",
    "RunFailed",
    "RunInUse",
    "SubAgentCancelled",
    "SubAgentTimeout",
    "UserError",
]


class RunFailed(FanoutError):
    """A run stopped by its failure policy (fail_fast, or a quorum not met).

    Attributes:
        partial: every sub-result finished before the run stopped (ok and failed), so no finished
            work is lost; with a result store they are also on disk for a resume.
    """

    def __init__(self, message: str, *, partial: list[SubResult] | None = None) -> None:
        super().__init__(message)
        self.partial = partial or []


class CheckpointError(UserError):
    """The checkpoint database cannot be read or written: read-only, disk full, damaged.

    The run stops (a result that cannot be kept is not worth computing on); every result
    committed before the failure stays in the file for a resume.
    """


class RunInUse(UserError):
    """Another live process holds the lease on this run id (see `fanout.orchestrator._lease`)."""


class SubAgentTimeout(FanoutError):
    """A sub-agent spent longer than `CallPolicy.sub_agent_timeout_s` outside its model calls."""


class SubAgentCancelled(FanoutError):
    """A sub-agent ended in ``CancelledError`` (or another exit) that fanout did not cause.

    Cancelling something of its own and letting the error escape is that sub-agent's failure; a
    run that is itself cancelled or interrupted stops instead, and records nothing for it.
    """


class BudgetExceeded(FanoutError):
    """A model call could have taken the run past `CallPolicy.budget_tokens` or `budget_usd`.

    The call is not made. Sub-agents that meet it fail with it (so a resume with a larger budget
    runs them); calls already running finish and are counted.
    """
