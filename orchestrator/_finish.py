"""The end of a run: the answer synthesized and checked, and the `RunResult` built from the state.

Both read the graph's state and nothing else, so a run resumed from its checkpoint ends exactly as
an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fanout.agents._secrets import scrub
from fanout.agents.backend import Usage

from ._subagents import ordered
from .auto import RunMode
from .context import RunContext
from .result import RunResult, RunUsage
from .stages import Stages
from .state import FanoutState
from .synthesize import Synthesis, collect_findings

__all__ = ["run_result", "synthesize_checked"]


def _spent(ctx: RunContext[Any]) -> Usage:
    usage: Usage = getattr(ctx.model, "usage", Usage())
    return usage


async def synthesize_checked(
    ctx: RunContext[Any], stages: Stages, state: FanoutState
) -> dict[str, Any]:
    """Merge the selected findings, then keep only what the cited documents back.

    A synthesis failure is not the run's failure: the answer falls back to the ranked findings
    and `synthesis_error` says why. One prompt's answer is checked against the documents it read.
    """
    request, answers = state["request"], state["answers"]
    error: str | None = None
    rounds = 0
    monolithic = state.get("mode") == "monolithic"
    if monolithic:  # one prompt read every document: the documents back its lines
        checked = stages.check(ctx, Synthesis(answer=answers[0].answer or ""), answers)
    else:
        try:
            synthesis = await stages.synthesize(ctx, answers)
        except Exception as exc:  # a custom synthesizer's failure loses no finding either
            synthesis = Synthesis(
                answer=collect_findings(request, answers),
                error=f"{type(exc).__name__}: {exc}",
            )
        error, rounds = synthesis.error and scrub(synthesis.error), synthesis.rounds
        # a key a server echoed is never stored or shown
        synthesis = synthesis.model_copy(update={"answer": scrub(synthesis.answer)})
        checked = stages.check(ctx, synthesis, answers)
        backed = any(a.selected and a.document_id for a in answers)
        if backed and not checked.citations and error is None:
            # Nothing the synthesizer wrote is backed by a finding: list the findings instead.
            error = "the synthesized answer cited no finding correctly"
            listed = stages.check(
                ctx, Synthesis(answer=collect_findings(request, answers)), answers
            )
            checked = replace(
                listed,
                invalid=checked.invalid + listed.invalid,
                unsupported=checked.unsupported + listed.unsupported,
            )
    selected_docs = [a.document_id for a in answers if a.selected and a.document_id]
    unanswered = [
        task
        for index, task in enumerate(request.tasks)
        if not any(a.selected and a.task_index == index for a in answers)
    ]
    if request.question is not None and request.instructions:
        unanswered = [] if selected_docs else [request.question]
    if monolithic:
        unanswered = [] if checked.text and answers[0].outcome == "found" else request.tasks
    cited = set(checked.citations)  # a set: a list here is quadratic at 100,000 documents
    return {
        "answer": checked.text,
        "citations": checked.citations,
        "invalid_citations": checked.invalid,
        "unsupported": checked.unsupported,
        "uncited": [d for d in dict.fromkeys(selected_docs) if d not in cited],
        "unanswered": unanswered,
        "synthesis_error": error,
        "synthesis_rounds": rounds,
        "stage_usage": {"synthesis": _spent(ctx)},
    }


def run_result(state: FanoutState, *, mode: RunMode) -> RunResult[Any]:
    """The result of a finished run's state (`mode` when the state does not say)."""
    tasks = state["tasks"]
    sub_results = ordered(tasks, state.get("sub_results", []))
    stages = {"sub_agents": sum((r.usage for r in sub_results), Usage())}
    asked = {t.document_id for t in tasks}
    unasked = (
        []
        if None in asked  # one prompt held every document
        else [d.id for d in state["request"].documents if d.id not in asked]
    )
    stages.update(state.get("stage_usage", {}))
    raw = RunResult[Any](
        run_id=state["run_id"],
        strategy=state.get("mode", mode),
        choice=state.get("choice"),
        answer=state["answer"],
        answers=state["answers"],
        sub_results=sub_results,
        citations=state.get("citations", []),
        invalid_citations=state.get("invalid_citations", []),
        unsupported=state.get("unsupported", []),
        uncited=state.get("uncited", []),
        unanswered=state.get("unanswered", []),
        unasked=unasked,
        synthesis_error=state.get("synthesis_error"),
        usage=RunUsage.from_stages(
            stages,
            state["finished_at"] - state["started_at"],
            synthesis_rounds=state.get("synthesis_rounds", 0),
        ),
    )
    return raw
