"""``strategy="auto"``: choose how each request runs from what the eval measured on this model.

The candidates are the strategies the coordinator can run for the request's shape, each named as
the eval measured it:

- a question over N documents: ``isolated`` (a sub-agent per document) or ``monolithic``;
- K instructions over documents: ``isolated`` or ``mti`` (the coordinator's one-prompt path puts
  every (document, instruction) in one call, as mti does);
- N known pairs (`Request.pairs`): ``pairs`` or ``mti``.

``batch`` is never a candidate: it packs several questions into a call, and a coordinator request
carries one question, so the coordinator has no batch path to run. Oracle rows are an upper bound
no request can reach and are never candidates either.

From a `Profile`, each candidate's accuracy interval, tokens and wall time are read at the
request's N (interpolated linearly between measured N; outside them, accuracy is taken from the
nearest N measured and the plan says it extrapolates) and document-length band. Without a profile
a conservative rule applies, and the plan says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from fanout.agents.backend import Backend
from fanout.agents.errors import UserError

from .profile import DOCUMENT_BANDS, Profile, ProfileRow, band_index, model_identity
from .request import Request

__all__ = [
    "CANDIDATES",
    "RULE_MONOLITHIC_MAX_N",
    "Estimate",
    "Objective",
    "RequestShape",
    "RunMode",
    "StrategyChoice",
    "StrategyChooser",
    "request_shape",
    "request_size",
]

RunMode = Literal["isolated", "monolithic"]
Objective = Literal["accuracy", "cost"]
RequestShape = Literal["question", "instructions", "paired"]

CANDIDATES: dict[RequestShape, dict[str, RunMode]] = {
    "question": {"isolated": "isolated", "isolated-topk": "isolated", "monolithic": "monolithic"},
    "instructions": {"isolated": "isolated", "mti": "monolithic"},
    "paired": {"pairs": "isolated", "mti": "monolithic"},
}
"""Per request shape: the eval strategy whose measurements apply -> how the coordinator runs it.
``isolated-topk`` runs isolated behind a BM25 pre-filter keeping the profile's `top_k` sub-tasks."""

RULE_MONOLITHIC_MAX_N = 2
"""Without a profile, one prompt is used up to this N and isolated sub-agents above it: the
multi-instance penalty grows with N, and a wrong one-prompt answer costs more than extra calls."""

_TIE = 1e-9
# Tokens kept free when asking whether every document fits one prompt (instruction, answer cue).
_PROMPT_OVERHEAD = 96


def request_shape(request: Request) -> RequestShape:
    """Which candidates apply: a question, per-document instructions, or known pairs."""
    if request.paired:
        return "paired"
    return "question" if request.question is not None else "instructions"


def request_size(request: Request) -> int:
    """N as the eval counts it: documents for a question, (document, task) instances otherwise."""
    documents = len(request.documents)
    if request.paired or request.question is not None:
        return documents
    return documents * len(request.instructions)


class Estimate(BaseModel):
    """What one candidate is expected to do on this request, read from the profile."""

    model_config = ConfigDict(frozen=True)

    strategy: str
    """The eval strategy whose rows were read (isolated, monolithic, pairs, mti)."""
    runs_as: RunMode
    """How the coordinator runs it."""
    accuracy: float
    """Expected accuracy."""
    ci_low: float
    """Lower end of the 95% interval (interpolated like the accuracy)."""
    ci_high: float
    """Upper end of the 95% interval."""
    tokens: float
    """Expected prompt plus completion tokens for the whole request."""
    wall_s: float
    """Expected wall time per question, as measured (calls of a request overlap)."""
    how: str
    """measured at N=..., interpolated between two N, or extrapolated (and from where)."""
    extrapolated: bool
    """True when N or the document length lies outside what was measured."""
    rows: list[ProfileRow]
    """The profile rows this estimate was read from."""
    top_k: int | None = None
    """For ``isolated-topk``: the sub-tasks its pre-filter keeps, as measured."""

    def summary(self) -> str:
        """The estimate in a few words."""
        return (
            f"{self.strategy} {self.accuracy:.0%} [{self.ci_low:.0%}-{self.ci_high:.0%}] "
            f"at ~{self.tokens:,.0f} tokens"
        )


class StrategyChoice(BaseModel):
    """How ``strategy="auto"`` ran one request, and why."""

    model_config = ConfigDict(frozen=True)

    strategy: RunMode
    """How the request was run."""
    top_k: int | None = None
    """Set when the chosen candidate asks only the `top_k` sub-tasks BM25 ranks best."""
    chosen: str
    """The candidate chosen, as the eval names it (isolated, monolithic, pairs, mti)."""
    source: Literal["profile", "rule"]
    """profile: chosen from measurements; rule: no profile, the built-in conservative rule."""
    objective: Objective
    """accuracy (the most accurate; ties go to the cheaper) or cost (the cheapest whose expected
    accuracy reaches `min_accuracy`)."""
    min_accuracy: float | None = None
    """The accuracy floor of the cost objective."""
    shape: RequestShape
    """question, instructions or paired."""
    n: int
    """Instances in the request (see `request_size`)."""
    document_tokens: float
    """Mean tokens per document, counted with the backend's tokenizer."""
    band: str
    """The document-length band of the request."""
    expected: Estimate | None = None
    """The chosen candidate's estimate (None under the rule)."""
    candidates: list[Estimate]
    """Every candidate the profile could estimate, chosen or not."""
    extrapolated: bool = False
    """True when the chosen estimate lies outside the measured N or document lengths."""
    reason: str
    """One line: what was compared and why this one won."""

    @property
    def rows(self) -> list[ProfileRow]:
        """Every profile row the choice was made from."""
        return [row for estimate in self.candidates for row in estimate.rows]


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _band_rows(rows: Sequence[ProfileRow], band: int) -> tuple[list[ProfileRow], str | None]:
    """The rows of the request's band; else of the nearest measured band, with a note saying so.

    Rows without a band ("any": results that did not record document lengths) stand for every
    band the profile has no row of its own for.
    """
    label = DOCUMENT_BANDS[band][0]
    same = [r for r in rows if r.band == label]
    covered = {r.n for r in same}
    # A resumed sweep mixes both: unbanded rows fill the N its banded rows do not measure.
    same += [r for r in rows if r.band == "any" and r.n not in covered]
    if same:
        return same, None
    measured = sorted({r.band for r in rows}, key=lambda b: (abs(_band_of(b) - band), _band_of(b)))
    nearest = measured[0]
    note = f"documents of {label} tokens were not measured (used {nearest})"
    return [r for r in rows if r.band == nearest], note


def _band_of(label: str) -> int:
    return next(i for i, (name, _) in enumerate(DOCUMENT_BANDS) if name == label)


def _estimate(
    strategy: str, runs_as: RunMode, rows: Sequence[ProfileRow], *, n: int, band: int, per: int
) -> Estimate:
    """One candidate at this N and band; `per` is questions per request."""
    chosen, band_note = _band_rows(rows, band)
    chosen.sort(key=lambda r: r.n)
    by_n = {r.n: r for r in chosen}
    low, high = chosen[0], chosen[-1]
    if n in by_n:
        row = by_n[n]
        used = [row]
        acc, lo, hi = row.accuracy, row.ci_low, row.ci_high
        tokens, wall = row.tokens_per_question, row.wall_s_per_question
        how, outside = f"measured at N={n}", False
    elif low.n < n < high.n:
        a = max((r for r in chosen if r.n < n), key=lambda r: r.n)
        b = min((r for r in chosen if r.n > n), key=lambda r: r.n)
        t = (n - a.n) / (b.n - a.n)
        used = [a, b]
        acc = _lerp(a.accuracy, b.accuracy, t)
        lo, hi = _lerp(a.ci_low, b.ci_low, t), _lerp(a.ci_high, b.ci_high, t)
        tokens = _lerp(a.tokens_per_question, b.tokens_per_question, t)
        wall = _lerp(a.wall_s_per_question, b.wall_s_per_question, t)
        how, outside = f"interpolated between N={a.n} and N={b.n}", False
    else:
        near = low if n < low.n else high
        used = [near]
        acc, lo, hi = near.accuracy, near.ci_low, near.ci_high
        tokens, wall = near.tokens_per_question, near.wall_s_per_question
        if len(chosen) > 1:
            # Cost per question is close to linear in N for every candidate: extend the nearest
            # measured segment, never below zero.
            other = chosen[1] if near is low else chosen[-2]
            used.append(other)
            slope_t = (near.tokens_per_question - other.tokens_per_question) / (near.n - other.n)
            slope_w = (near.wall_s_per_question - other.wall_s_per_question) / (near.n - other.n)
            tokens = max(tokens + slope_t * (n - near.n), 0.0)
            wall = max(wall + slope_w * (n - near.n), 0.0)
        elif per == 1 and near.top_k is None:
            # One question over every document: both candidates read all N documents (a top-k
            # pre-filter asks k of them at any N).
            tokens, wall = tokens * n / near.n, wall * n / near.n
        span = f"N={low.n}" if low.n == high.n else f"N={low.n}-{high.n}"
        how = f"extrapolated: N={n} is outside the measured {span} (accuracy as at N={near.n})"
        outside = True
    if band_note:
        how, outside = f"{how}; {band_note}", True
    return Estimate(
        strategy=strategy,
        runs_as=runs_as,
        top_k=used[0].top_k,
        accuracy=acc,
        ci_low=lo,
        ci_high=hi,
        tokens=tokens * per,
        wall_s=wall,
        how=how,
        extrapolated=outside,
        rows=used,
    )


@dataclass(frozen=True, kw_only=True)
class StrategyChooser:
    """Chooses isolated or monolithic per request, from a profile or the built-in rule.

    Args:
        profile: the eval's measurements for this model (a `Profile` or a path to profile.json);
            None uses the built-in rule (`RULE_MONOLITHIC_MAX_N`).
        objective: "accuracy": the most accurate candidate, ties to the cheaper; "cost": the
            cheapest whose expected accuracy reaches `min_accuracy`.
        min_accuracy: the floor of the cost objective, between 0 and 1.
    """

    profile: Profile | None = None
    """The measurements, or None for the rule."""
    objective: Objective = "accuracy"
    """What to optimise."""
    min_accuracy: float | None = None
    """The cost objective's accuracy floor."""

    @classmethod
    def create(
        cls,
        profile: Profile | str | Path | None = None,
        *,
        objective: str = "accuracy",
        min_accuracy: float | None = None,
    ) -> StrategyChooser:
        """Check the options (one-line `UserError`s) and read the profile if given as a path."""
        if objective not in ("accuracy", "cost"):
            raise UserError(
                f"unknown objective '{objective}' (use accuracy or cost)", parameter="objective"
            )
        if objective == "cost" and min_accuracy is None:
            raise UserError(
                "the cost objective needs a minimum accuracy, e.g. 0.8", parameter="min_accuracy"
            )
        if objective == "accuracy" and min_accuracy is not None:
            raise UserError("applies to the cost objective only", parameter="min_accuracy")
        if min_accuracy is not None and not 0 <= min_accuracy <= 1:
            raise UserError(
                f"must be between 0 and 1, not {min_accuracy}", parameter="min_accuracy"
            )
        loaded = Profile.load(profile) if isinstance(profile, str | Path) else profile
        return cls(
            profile=loaded,
            objective="cost" if objective == "cost" else "accuracy",
            min_accuracy=min_accuracy,
        )

    def check_backend(self, backend: Backend) -> None:
        """Refuse a backend whose model is not the profile's (one-line `UserError`)."""
        if self.profile is not None:
            self.profile.check_model(model_identity(backend))

    def choose(
        self, request: Request, backend: Backend, *, max_tokens: int = 128
    ) -> StrategyChoice:
        """Choose how `request` runs on `backend`.

        Raises:
            UserError: the profile measured none of the candidates for this request's shape.
        """
        shape, n = request_shape(request), request_size(request)
        lengths = [backend.count_tokens(d.text) for d in request.documents]
        doc_tokens = sum(lengths) / len(lengths)
        band = band_index(doc_tokens)
        candidates = dict(CANDIDATES[shape])
        notes: list[str] = []
        window = backend.context_window
        whole = sum(lengths) + _PROMPT_OVERHEAD + max_tokens
        if window is not None and whole > window:
            # Isolated sub-agents chunk long documents; one prompt cannot.
            candidates = {k: v for k, v in candidates.items() if v != "monolithic"}
            notes.append(f"one prompt would need ~{whole:,} tokens, the context holds {window:,}")
        common: dict[str, object] = {
            "objective": self.objective,
            "min_accuracy": self.min_accuracy,
            "shape": shape,
            "n": n,
            "document_tokens": doc_tokens,
            "band": DOCUMENT_BANDS[band][0],
        }
        if self.profile is None:
            return self._rule(candidates, n, notes, common)
        estimates: list[Estimate] = []
        for name, mode in candidates.items():
            rows = [r for r in self.profile.rows if r.strategy == name]
            if not rows:
                if name != "isolated-topk":  # an opt-in candidate: absent unless measured
                    notes.append(f"{name} is not in the profile")
                continue
            if len({r.top_k for r in rows}) > 1:
                notes.append(f"{name} was measured with several k: left out")
                continue
            per = 1 if shape == "question" else n
            estimates.append(_estimate(name, mode, rows, n=n, band=band, per=per))
        if not estimates:
            names = ", ".join(CANDIDATES[shape])
            raise UserError(
                f"the profile ({self.profile.suite} on {self.profile.model.name}) measured none "
                f"of {names}, which a {shape} request can run as; measure them with fanout eval"
            )
        chosen, why = self._decide(estimates)
        others = [e.summary() for e in estimates if e is not chosen]
        parts = [
            f"{chosen.summary()}" + (f" vs {'; '.join(others)}" if others else ""),
            why,
            f"{self.profile.suite} profile, N={n}, {DOCUMENT_BANDS[band][0]} tok/doc: {chosen.how}",
            *notes,
        ]
        return StrategyChoice.model_validate(
            {
                "strategy": chosen.runs_as,
                "top_k": chosen.top_k,
                "chosen": chosen.strategy,
                "source": "profile",
                "expected": chosen,
                "candidates": estimates,
                "extrapolated": chosen.extrapolated,
                "reason": "; ".join(parts),
                **common,
            }
        )

    def _decide(self, estimates: list[Estimate]) -> tuple[Estimate, str]:
        """The winner under the objective, and why it won."""
        if len(estimates) == 1:
            return estimates[0], "the only candidate measured"
        if self.objective == "cost":
            floor = self.min_accuracy or 0.0
            enough = [e for e in estimates if e.accuracy >= floor - _TIE]
            if enough:
                best = min(enough, key=lambda e: (e.tokens, -e.accuracy))
                return best, f"the cheapest expected to reach {floor:.0%}"
            best = max(estimates, key=lambda e: (e.accuracy, -e.tokens))
            return best, f"none is expected to reach {floor:.0%}: the most accurate"
        top = max(e.accuracy for e in estimates)
        tied = [e for e in estimates if e.accuracy >= top - _TIE]
        best = min(tied, key=lambda e: e.tokens)
        return best, "equally accurate and the cheaper" if len(tied) > 1 else "the most accurate"

    def _rule(
        self, candidates: dict[str, RunMode], n: int, notes: list[str], common: dict[str, object]
    ) -> StrategyChoice:
        """No profile: one prompt for small N (if it fits), isolated sub-agents above."""
        want: RunMode = "monolithic" if n <= RULE_MONOLITHIC_MAX_N else "isolated"
        if want not in candidates.values():
            want = "isolated"
        chosen = next(name for name, mode in candidates.items() if mode == want)
        reason = (
            f"no profile: built-in rule (one prompt up to N={RULE_MONOLITHIC_MAX_N}, isolated "
            f"sub-agents above), N={n}; the profile.json that fanout eval writes for this model "
            "chooses from measurements instead"
        )
        return StrategyChoice.model_validate(
            {
                "strategy": want,
                "chosen": chosen,
                "source": "rule",
                "candidates": [],
                "reason": "; ".join([reason, *notes]),
                **common,
            }
        )
