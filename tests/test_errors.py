"""Errors: a caller's mistake is a ValueError naming the argument, never a command-line flag."""

from __future__ import annotations

import ast

import pytest

from fanout import CallPolicy, UserError
from tests.conftest import ROOT

# Modules that define the command line may speak of its flags; nothing else may.
CLI_MODULES = {"evals/_cli.py", "evals/bench.py", "orchestrator/_cli_options.py"}


def test_user_error_is_a_value_error_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"^max_concurrency: must be at least 1, not 0$") as info:
        CallPolicy(max_concurrency=0)
    assert isinstance(info.value, UserError) and info.value.parameter == "max_concurrency"
    assert info.value.message == "must be at least 1, not 0"


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0.0])
def test_call_policy_refuses_a_timeout_that_is_not_a_positive_number(timeout: float) -> None:
    with pytest.raises(UserError, match="timeout_s: must be a positive, finite number"):
        CallPolicy(timeout_s=timeout)


def library_messages() -> list[tuple[str, str]]:
    found = []
    for package in ("agents", "orchestrator", "evals"):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            if name in CLI_MODULES:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "UserError":
                    for part in ast.walk(node):
                        if isinstance(part, ast.Constant) and isinstance(part.value, str):
                            found.append((name, part.value))
    return found


def test_library_errors_do_not_mention_cli_flags() -> None:
    messages = library_messages()
    assert len(messages) > 50  # the scan sees the library's errors
    assert [m for m in messages if " --" in f" {m[1]}"] == []
