"""A profile: what ``fanout eval`` measured for one model and task, read back to choose strategies.

``fanout eval --out DIR`` writes DIR/profile.json; ``Coordinator(strategy="auto", profile=...)`` and
``fanout run --strategy auto --profile FILE`` read it (`fanout.orchestrator.auto`). A profile
holds, per strategy, N and document-length band, the accuracy with its 95% interval, tokens and
wall time per question. Measurements hold for the model they were made on, so a profile names
that model (the GGUF's file name and sha256, or the API model's name) and refuses any other.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fanout.agents.backend import Backend
from fanout.agents.errors import UserError

__all__ = [
    "DOCUMENT_BANDS",
    "PROFILE_FILE",
    "PROFILE_FORMAT",
    "ModelIdentity",
    "Profile",
    "ProfileRow",
    "band_index",
    "length_band",
    "model_identity",
]

PROFILE_FILE = "profile.json"
"""The file ``fanout eval --out DIR`` writes next to results.json."""
PROFILE_FORMAT = "fanout-profile/1"
"""Version tag of profile.json."""

DOCUMENT_BANDS: tuple[tuple[str, int], ...] = (
    ("<64", 64),
    ("64-255", 256),
    ("256-1023", 1024),
    ("1024-4095", 4096),
    ("4096-16383", 16384),
    (">=16384", 2**62),
)
"""Mean tokens per document, in bands growing fourfold: (label, first length above the band).
The edges sit away from the synthetic suites' usual lengths (100-120 tokens), so one sweep's
groups do not straddle an edge."""


def band_index(tokens: float) -> int:
    """Which of `DOCUMENT_BANDS` a mean document length falls in."""
    return next(i for i, (_, upper) in enumerate(DOCUMENT_BANDS) if tokens < upper)


def length_band(tokens: float) -> str:
    """The label of the band a mean document length (in tokens) falls in."""
    return DOCUMENT_BANDS[band_index(tokens)][0]


class ModelIdentity(BaseModel):
    """Which model a measurement belongs to."""

    model_config = ConfigDict(frozen=True)

    name: str
    """The backend's model name: the GGUF's file name for llama.cpp, the model name for APIs."""
    sha256: str | None = None
    """The GGUF file's SHA-256, for a local model (None for a model behind an API)."""

    def describe(self) -> str:
        """The name, with a short hash when there is one."""
        return f"{self.name} (sha256 {self.sha256[:12]})" if self.sha256 else self.name

    def same_model(self, other: ModelIdentity) -> bool:
        """Whether `other` is this model.

        Same file contents when both hashes are known (a renamed copy is the same model), else the
        same name; a hash on one side only is a local file against an API model.
        """
        if self.sha256 is not None or other.sha256 is not None:
            return self.sha256 == other.sha256
        return self.name == other.name


_hashes: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file, cached per (path, size, mtime): a GGUF is hashed once per process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


def model_identity(backend: Backend) -> ModelIdentity:
    """The identity of the model behind `backend`.

    A local GGUF (a backend with a ``model_path``) is named by its file name and hashed; a backend
    that wraps another (fault injection's ``inner``, a fallback's ``primary``) is the model it
    wraps; any other backend is its model name.
    """
    for attribute in ("inner", "primary"):
        wrapped = getattr(backend, attribute, None)
        if wrapped is not None and wrapped is not backend:
            return model_identity(wrapped)
    path = getattr(backend, "model_path", None)
    if isinstance(path, str | os.PathLike):
        file = Path(path)
        return ModelIdentity(name=file.name, sha256=_file_sha256(file))
    return ModelIdentity(name=backend.name)


class ProfileRow(BaseModel):
    """One strategy at one N and one document-length band, as the eval measured it."""

    model_config = ConfigDict(frozen=True)

    strategy: str
    """The eval strategy (isolated, monolithic, mti, batch, pairs, ...)."""
    routing: str
    """blind, paired, oracle (an upper bound, never chosen) or custom."""
    n: int = Field(ge=1)
    """Instances per request (documents, or (document, task) pairs)."""
    band: str
    """Mean tokens per document of the groups measured (a `DOCUMENT_BANDS` label), or "any"
    when the eval did not record document lengths."""
    document_tokens: float | None = Field(default=None, ge=0)
    """Mean tokens per document over those groups."""
    groups: int = Field(ge=1)
    """Groups (requests) measured."""
    questions: int = Field(ge=1)
    """Questions scored."""
    correct: int = Field(ge=0)
    """Questions answered right."""
    accuracy: float = Field(ge=0, le=1)
    """correct / questions."""
    ci_low: float = Field(ge=0, le=1)
    """Lower end of the Wilson 95% interval."""
    ci_high: float = Field(ge=0, le=1)
    """Upper end of the Wilson 95% interval."""
    tokens_per_question: float = Field(ge=0)
    """Prompt plus completion tokens, per question."""
    top_k: int | None = Field(default=None, ge=1)
    """For ``isolated-topk``: the sub-tasks its BM25 pre-filter kept per question."""
    wall_s_per_question: float = Field(ge=0)
    """Wall time of the groups, per question (calls of a group overlap)."""

    @model_validator(mode="after")
    def _consistent(self) -> ProfileRow:
        if self.band != "any" and self.band not in {label for label, _ in DOCUMENT_BANDS}:
            raise ValueError(f"unknown band {self.band!r}")
        if self.correct > self.questions:
            raise ValueError(f"{self.correct} correct of {self.questions} questions")
        if not self.ci_low - 1e-6 <= self.accuracy <= self.ci_high + 1e-6:
            raise ValueError(
                f"accuracy {self.accuracy} lies outside its interval [{self.ci_low}, {self.ci_high}]"
            )
        return self

    def cell(self) -> str:
        """The row in a few words, for reasons and tables."""
        return (
            f"{self.strategy} N={self.n} ({self.band} tok/doc): {self.accuracy:.0%} "
            f"[{self.ci_low:.0%}-{self.ci_high:.0%}], {self.tokens_per_question:,.0f} tok/q"
        )


class Profile(BaseModel):
    """Everything one eval measured for one model and one suite (the whole of profile.json)."""

    model_config = ConfigDict(frozen=True)

    format: str = PROFILE_FORMAT
    """Version tag."""
    model: ModelIdentity
    """The model every row was measured on."""
    suite: str
    """The suite (task kind) measured, e.g. keyvalue or nq."""
    source: str = ""
    """How it was measured: the suite's settings, seed and groups per N."""
    rows: list[ProfileRow] = Field(default_factory=list)
    """One per (strategy, N, band)."""

    @model_validator(mode="after")
    def _one_row_per_cell(self) -> Profile:
        seen: set[tuple[str, int, str]] = set()
        for row in self.rows:
            key = (row.strategy, row.n, row.band)
            if key in seen:
                raise ValueError(f"two rows for {row.strategy} at N={row.n}, band {row.band}")
            seen.add(key)
        return self

    def check_model(self, identity: ModelIdentity, *, where: str = "the profile") -> None:
        """Refuse a model other than the one measured.

        Raises:
            UserError: `identity` is another model.
        """
        if not self.model.same_model(identity):
            raise UserError(
                f"{where} was measured on {self.model.describe()}, not on this run's model "
                f"{identity.describe()}; measure this model with fanout eval"
            )

    def save(self, path: Path) -> None:
        """Write the profile as indented JSON."""
        path.write_text(self.model_dump_json(indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """Read profile.json; a missing, damaged or foreign file is a one-line `UserError`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise UserError(f"cannot read profile {path}: {reason}") from None
        try:
            data: Any = cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "file"
            raise UserError(
                f"{path} is not a fanout profile ({where}: {first['msg']}); "
                "fanout eval writes one as profile.json next to results.json"
            ) from None
        profile: Profile = data
        if profile.format != PROFILE_FORMAT:
            raise UserError(
                f"{path} has profile format {profile.format!r}; expected {PROFILE_FORMAT!r}"
            )
        if not profile.rows:
            raise UserError(f"profile {path} holds no measurements")
        return profile
