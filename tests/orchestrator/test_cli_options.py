"""`fanout run` and `fanout eval` share every option they have in common, from one definition."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from fanout.cli import app
from fanout.orchestrator import _cli_options as opts
from fanout.orchestrator.policy import CallPolicy

SHARED = {
    "--backend", "--model", "--base-url", "--endpoint", "--n-gpu-layers", "--n-ctx", "--threads",
    "--parallel", "--context-window", "--max-concurrency", "--timeout", "--retries", "--max-tokens",
    "--profile", "--objective", "--min-accuracy", "--prices", "--top-k", "--chunk-tokens",
}  # fmt: skip


def options(command: str) -> dict[str, str]:
    """Each option's entry in the command's --help: flag, metavar, help, default, range."""
    help_text = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
    entries: dict[str, str] = {}
    for line in help_text.splitlines():
        match = re.match(r"\s+(?:-\w, )?(--[\w-]+)(.*)", line)
        if match:
            entries[match.group(1)] = " ".join(match.group(2).split())
    return entries


def test_run_and_eval_declare_the_shared_options_identically() -> None:
    run, eval_ = options("run"), options("eval")
    assert set(run) & set(eval_) - {"--help"} == SHARED
    for flag in SHARED:
        assert run[flag] == eval_[flag], flag


def test_defaults_are_the_library_call_policy_defaults() -> None:
    assert opts.CallOptions().policy() == CallPolicy()


def test_parallel_raises_concurrency_so_a_batch_can_fill() -> None:
    assert opts.CallOptions(max_concurrency=2).policy(parallel=8).max_concurrency == 8


def test_help_lists_choices_not_types() -> None:
    run = options("run")
    for flag, choices in {
        "--backend": "llama|openai",
        "--endpoint": "chat|completions",
        "--strategy": "isolated|monolithic|auto",
        "--objective": "accuracy|cost",
        "--synthesis": "llm|collect",
    }.items():
        assert run[flag].startswith(f"<{choices}>"), flag
