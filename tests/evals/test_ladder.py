from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from fanout.agents.backend import CompletionRequest
from fanout.agents.testing import ScriptedBackend
from fanout.cli import main
from fanout.evals import evaluate
from fanout.evals._compare import load_results
from fanout.evals._ladder import crossover_table, pool_cells
from tests.evals.test_litm_suites import kv_file


def reads_objects_of(most: int) -> Callable[[CompletionRequest], str]:
    """Finds the key's value in an object of up to `most` pairs; past that, answers the first
    value: a model whose one prompt suffers from length while each sub-agent's chunk stays short."""

    def answer(request: CompletionRequest) -> str:
        prompt = request.prompt
        if prompt.context_label == "Findings":
            return prompt.context.splitlines()[0].removeprefix("- ")
        key = re.search(r'key "([^"]+)"', prompt.task)
        pairs = re.findall(r'"([^"]+)": "([^"]+)"', prompt.context)
        if key is None or not pairs:
            return "not found"
        if len(pairs) > most:
            return pairs[0][1]
        values = dict(pairs)
        return values.get(key.group(1), "not found")

    return answer


reads_short_objects = reads_objects_of(8)


CONTEXT = 204  # chunks of at most 47 tokens: up to 7 pairs, which the scripted model reads right


def test_the_table_finds_the_crossover_and_the_plots_show_each_position(tmp_path: Path) -> None:
    data = kv_file(tmp_path, count=6, pairs=10)
    folders = []
    for position in ("start", "middle", "end"):
        folder = tmp_path / position
        evaluate(
            ScriptedBackend(fn=reads_short_objects, prompt_style="chat", context_window=CONTEXT),
            suite="kvretrieval",
            dataset=data,
            position=position,
            strategies=("isolated", "monolithic"),
            instances=(4, 10),
            groups=6,
            out=folder,
        )
        folders.append(folder)
    runs = [load_results(f) for f in folders]
    pooled = {(c.strategy, c.n): c for c in pool_cells(runs)}
    assert pooled["isolated", 10].questions == 18
    assert pooled["isolated", 10].accuracy == 1.0
    assert pooled["monolithic", 10].accuracy < 0.5
    (row,) = crossover_table(runs)
    assert row.suite == "kvretrieval" and row.measured == [4, 10]
    assert row.crossover == 10 and row.token_ratio is not None and row.token_ratio > 1

    out = tmp_path / "ladder"
    main_args = ["ladder", *map(str, folders), "--out", str(out)]
    try:
        main(main_args)
    except SystemExit as exit_:
        assert exit_.code == 0
    table = (out / "crossover.md").read_text()
    assert "| kvretrieval |" in table and "N=10: isolated 100%" in table
    assert sorted(p.name for p in out.glob("positions-*.png")) == [
        "positions-scripted-kvretrieval-n10.png",
        "positions-scripted-kvretrieval-n4.png",
    ]
    assert json.loads((folders[0] / "results.json").read_text())["config"]["source"].endswith(
        "gold start"
    )


def test_a_chunked_run_gets_its_own_row_against_the_same_one_prompt(tmp_path: Path) -> None:
    data = kv_file(tmp_path, count=4, pairs=20)
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"

    def sweep(out: Path, strategies: tuple[str, ...], chunk_tokens: int | None) -> None:
        evaluate(
            ScriptedBackend(fn=reads_objects_of(12), prompt_style="chat", context_window=4096),
            suite="kvretrieval", dataset=data, position="middle", strategies=strategies,
            instances=(20,), groups=4, chunk_tokens=chunk_tokens, out=out,
        )  # fmt: skip

    sweep(whole, ("isolated", "monolithic"), None)
    sweep(chunked, ("isolated", "monolithic"), 64)  # one prompt again: the same groups, once
    runs = [load_results(whole), load_results(chunked)]
    pooled = {c.strategy: c for c in pool_cells(runs)}
    assert set(pooled) == {"isolated", "isolated (64-token chunks)", "monolithic"}
    assert pooled["monolithic"].questions == 4  # measured in both runs, counted once
    assert pooled["isolated"].accuracy == 0.0  # the whole object in one sub-agent: too long
    assert pooled["isolated (64-token chunks)"].accuracy == 1.0  # about 10 pairs a chunk
    plain, cut = crossover_table(runs)
    assert (plain.challenger, plain.crossover) == ("isolated", None)
    assert (cut.challenger, cut.crossover) == ("isolated (64-token chunks)", 20)
