"""Moved to `agents.portal`; kept until evals/ imports it from there."""

from agents.portal import run_sync

__all__ = ["run_sync"]
