"""What every bench section's report has: the goal in words and whether the measurement met it."""

from __future__ import annotations

from abc import abstractmethod

from pydantic import BaseModel, ConfigDict

__all__ = ["Section"]


class Section(BaseModel):
    """One section's figures, next to the goal they are held to."""

    model_config = ConfigDict(frozen=True)

    goal: str
    """The target, in words."""
    met: bool | None
    """Whether the measurement met it (None: no verdict possible)."""

    @abstractmethod
    def summary(self) -> str:
        """The measurement in one line, for the table."""
