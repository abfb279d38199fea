"""Class 5 of issue 17: stored state never answers the wrong question, and storage failures lose
nothing.

A stored sub-result stands in only for the same document text, task, prompt, model and settings;
eval results carry their dataset's hash; groups never repeat instances; a read-only, full or
damaged checkpoint is one line and exit 2, with everything stored before kept.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from typer.testing import CliRunner

from fanout.agents.backend import CompletionRequest
from fanout.agents.errors import UserError
from fanout.agents.testing import ScriptedBackend
from fanout.evals import evaluate
from fanout.evals.suites import make_suite
from fanout.orchestrator import (
    CallPolicy,
    Coordinator,
    Document,
    MemoryResultStore,
    Request,
    SqliteResultStore,
)
from fanout.orchestrator.checkpoint import checkpoint_types
from tests.conftest import ROOT
from tests.hostile.runtime_support import (
    HoldingServer,
    finish,
    start_cli,
    stored_ids,
    wait_for,
    write_docs,
)


def code_in_document(request: CompletionRequest) -> str:
    return request.prompt.context.split("code is ")[-1].rstrip(".")


# -- a stored result is used only for the same text, task, prompt, model and settings ------------


def test_a_result_store_answers_only_what_it_was_asked_before() -> None:
    store = MemoryResultStore()

    def run(text: str, question: str, **settings: object) -> tuple[str, int]:
        backend = ScriptedBackend(fn=code_in_document, name=str(settings.pop("name", "m")))
        coordinator = Coordinator(
            backend, synthesis="collect", result_store=store, policy=CallPolicy(**settings)
        )
        documents = [Document(id="a.md", text=f"The code is {text}.")]
        result = coordinator.run(Request(documents=documents, question=question), run_id="nightly")
        return result.answer, backend.n_calls

    assert run("1111", "What is the code?") == ("- 1111 [a.md]", 1)
    assert run("1111", "What is the code?") == ("- 1111 [a.md]", 0)  # the same: stored
    assert run("2222", "What is the code?") == ("- 2222 [a.md]", 1)  # the document changed
    assert run("2222", "Which code?") == ("- 2222 [a.md]", 1)  # another question
    assert run("2222", "Which code?", name="other-model")[1] == 1  # another model
    assert run("2222", "Which code?", name="other-model", max_tokens=32)[1] == 1  # a budget
    assert run("2222", "Which code?", name="other-model", max_tokens=32)[1] == 0


def test_a_result_store_file_from_before_content_keys_is_never_trusted(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the table as fanout wrote it before content keys
        conn.execute(
            "CREATE TABLE fanout_sub_results (run_id TEXT NOT NULL, sub_agent_id TEXT NOT NULL,"
            " result TEXT NOT NULL, PRIMARY KEY (run_id, sub_agent_id))"
        )
        stale = {"sub_agent_id": "a.md#t0c0", "document_id": "a.md", "task": "Q",
                 "status": "ok", "output": "1111", "outcome": "found"}  # fmt: skip
        conn.execute(
            "INSERT INTO fanout_sub_results VALUES ('r', 'a.md#t0c0', ?)", [json.dumps(stale)]
        )
    store = SqliteResultStore(db)
    try:
        backend = ScriptedBackend(fn=code_in_document)
        result = Coordinator(backend, synthesis="collect", result_store=store).run(
            Request(documents=[Document(id="a.md", text="The code is 2222.")], question="Q"),
            run_id="r",
        )
    finally:
        store.close()
    assert backend.n_calls == 1 and result.answer == "- 2222 [a.md]"


def test_resuming_with_other_settings_or_another_request_is_refused_naming_the_change() -> None:
    saver = InMemorySaver(serde=JsonPlusSerializer(allowed_msgpack_modules=checkpoint_types()))
    documents = [Document(id="a.md", text="The code is 1111.")]
    request = Request(documents=documents, question="What is the code?")
    Coordinator(ScriptedBackend(fn=code_in_document), checkpointer=saver).run(request, run_id="r")

    refusals = {
        "max tokens '128', not '32'": lambda: Coordinator(
            ScriptedBackend(), checkpointer=saver, policy=CallPolicy(max_tokens=32)
        ).run(request, run_id="r"),
        "model 'ScriptedBackend scripted', not 'ScriptedBackend other'": lambda: Coordinator(
            ScriptedBackend(name="other"), checkpointer=saver
        ).run(request, run_id="r"),
        "synthesis 'llm', not 'collect'": lambda: Coordinator(
            ScriptedBackend(), checkpointer=saver, synthesis="collect"
        ).run(request, run_id="r"),
        "document 'a.md' has changed": lambda: Coordinator(ScriptedBackend(), checkpointer=saver).run(
            Request(documents=[Document(id="a.md", text="The code is 2222.")], question="What is the code?"),
            run_id="r",
        ),
    }  # fmt: skip
    for change, rerun in refusals.items():
        with pytest.raises(UserError, match="run id 'r' was started with") as refused:
            rerun()
        assert change in str(refused.value)


# -- evals: the dataset's hash, and groups that never repeat an instance ----------------------


def write_dataset(path: Path, gold: str = "Ada Lane") -> Path:
    lines = [
        {"id": "q1", "question": "Who founded Acme?", "answers": [gold],
         "documents": [{"id": "acme.md", "text": "Acme was founded by Ada Lane."}]},
        {"id": "q2", "question": "Where is Brill based?", "answers": ["Oslo"],
         "documents": [{"id": "brill.md", "text": "Brill is based in Oslo."}]},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def echo_document(request: CompletionRequest) -> str:
    if request.prompt.context_label == "Findings":
        return request.prompt.context.splitlines()[0].removeprefix("- ")
    return "Ada Lane" if "Ada Lane" in request.prompt.context else "Oslo"


def test_an_edited_dataset_is_refused_on_resume_and_by_report_only(tmp_path: Path) -> None:
    dataset, out = write_dataset(tmp_path / "data.jsonl"), tmp_path / "eval"
    first = evaluate(
        ScriptedBackend(fn=echo_document), suite=make_suite("jsonl", dataset=dataset),
        strategies=["isolated"], instances=[1], groups=1, out=out,
    )  # fmt: skip
    assert first.cells[0].accuracy == 1.0
    write_dataset(dataset, gold="Somebody Else")  # a gold answer edited

    with pytest.raises(UserError, match="dataset_sha256"):
        evaluate(
            ScriptedBackend(fn=echo_document), suite=make_suite("jsonl", dataset=dataset),
            strategies=["isolated"], instances=[1], groups=2, out=out,
        )  # fmt: skip
    from fanout.cli import app

    result = CliRunner().invoke(app, ["eval", "--out", str(out), "--report-only"])
    assert result.exit_code == 2 or isinstance(result.exception, UserError), result.output
    assert "was scored against another version of" in str(result.exception or result.output)


@pytest.mark.parametrize("groups", ["6", "100000"])
def test_groups_that_would_repeat_instances_are_refused(tmp_path: Path, groups: str) -> None:
    dataset = write_dataset(tmp_path / "data.jsonl")
    proc = subprocess.run(
        [sys.executable, "-m", "fanout", "eval", "--suite", "jsonl", "--dataset", str(dataset),
         "--instances", "2", "--groups", groups, "--out", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "instances are never repeated" in lines[0], proc.stderr
    assert not (tmp_path / "out" / "results.json").exists()
    suite = make_suite("jsonl", dataset=dataset)
    ids = {q.id for g in range(2) for q in suite.group(1, g, seed=0).questions}
    assert ids == {"q1", "q2"}  # N=1 x 2 groups: each instance once


# -- storage failures: one line, exit 2, nothing stored lost ------------------------------------


@pytest.fixture
def server() -> Iterator[HoldingServer]:
    holding = HoldingServer()
    yield holding
    holding.close()


def cli_args(folder: Path, server: HoldingServer, db: Path, concurrency: int = 1) -> list[str]:
    return [
        "run", str(folder), "-q", "What is the code?", "--backend", "openai", "--model", "m",
        "--base-url", server.stub.base_url, "--synthesis", "collect",
        "--max-concurrency", str(concurrency), "--retries", "0", "--run-id", "r",
        "--checkpoint", str(db),
    ]  # fmt: skip


def run_cli(args: list[str], **popen: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fanout", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=180, **popen,  # type: ignore[call-overload]
    )  # fmt: skip


def assert_one_storage_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("fanout: plan:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("fanout: error: ")
    assert "Traceback" not in proc.stderr and "never retrieved" not in proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def make_read_only(paths: list[Path]) -> None:
    if os.geteuid() != 0:
        for path in paths:
            path.chmod(0o444)
        return
    for path in paths:  # root ignores permission bits: the immutable attribute stops it
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a file read-only for root on this filesystem")


def undo_read_only(paths: list[Path]) -> None:
    for path in paths:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        else:
            path.chmod(0o644)


def test_a_read_only_checkpoint_is_one_line_and_left_as_it_was(
    tmp_path: Path, server: HoldingServer
) -> None:
    folder, db = write_docs(tmp_path / "docs", 3), tmp_path / "run.db"
    assert run_cli(cli_args(folder, server, db)).returncode == 0
    files = sorted(tmp_path.glob("run.db*"))
    before = {path: path.read_bytes() for path in files}
    make_read_only(files)
    try:
        again = run_cli(cli_args(folder, server, db))  # even resuming a finished run
    finally:
        undo_read_only(files)
    assert_one_storage_line(again, "readonly", "must be writable")
    assert {path: path.read_bytes() for path in files} == before


def limit_file_size(size: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_disk_full_at_the_start_is_one_line(tmp_path: Path, server: HoldingServer) -> None:
    folder, db = write_docs(tmp_path / "docs", 3), tmp_path / "run.db"
    proc = run_cli(cli_args(folder, server, db), preexec_fn=lambda: limit_file_size(16_384))
    assert_one_storage_line(proc, "is the disk full?")


def test_a_disk_filling_up_mid_run_is_one_line_and_keeps_what_was_stored(
    tmp_path: Path, server: HoldingServer
) -> None:
    folder, db = write_docs(tmp_path / "docs", 40), tmp_path / "run.db"
    server.hold_after = 6
    first = start_cli(*cli_args(folder, server, db, concurrency=4))
    wait_for(lambda: len(stored_ids(db)) >= 6 and server.holding.is_set(), first, timeout_s=120)
    sizes = [path.stat().st_size for path in tmp_path.glob("run.db*")]
    # The disk is full from now on: no file of the checkpoint may grow.
    resource.prlimit(first.pid, resource.RLIMIT_FSIZE, (max(sizes), max(sizes)))
    server.release.set()
    _, err = finish(first, 180)
    assert_one_storage_line(
        subprocess.CompletedProcess(first.args, first.returncode, "", err),
        "is the disk full?", "rerun with --run-id r",
    )  # fmt: skip
    kept = stored_ids(db)
    assert len(kept) >= 6

    server.hold_after = None
    answered_before = dict(server.answered)
    rerun = run_cli([*cli_args(folder, server, db), "--json"])
    assert rerun.returncode == 0, rerun.stderr
    recomputed = {d for d, n in server.answered.items() if n > answered_before.get(d, 0)}
    assert not recomputed & {k.split(".md")[0].removeprefix("d") for k in kept}
    assert all(r["status"] == "ok" for r in json.loads(rerun.stdout)["sub_results"])


def test_a_checkpoint_damaged_mid_run_is_one_line(tmp_path: Path, server: HoldingServer) -> None:
    folder, db = write_docs(tmp_path / "docs", 30), tmp_path / "run.db"
    server.hold_after = 5
    first = start_cli(*cli_args(folder, server, db, concurrency=4))
    wait_for(lambda: len(stored_ids(db)) >= 5 and server.holding.is_set(), first, timeout_s=120)
    for path in tmp_path.glob("run.db*"):  # something else overwrites the files
        if path.suffix != ".db-shm":
            data = path.read_bytes()
            keep = 100 if path.suffix == ".db" else 32  # the header of each
            path.write_bytes(data[:keep] + b"\xa5" * (len(data) - keep))
    server.release.set()
    _, err = finish(first, 180)
    assert_one_storage_line(
        subprocess.CompletedProcess(first.args, first.returncode, "", err),
        "move it away to start afresh",
    )


def test_an_eval_that_cannot_write_its_results_is_one_line(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "data.jsonl")
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))\n"
        "import fanout.agents._factory as factory\n"
        "from fanout.agents.testing import ScriptedBackend\n"
        "from tests.hostile.test_stored_state import echo_document\n"
        "factory.make_backend = lambda kind, **o: ScriptedBackend(fn=echo_document)\n"
        "from fanout.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", script, "eval", "--suite", "jsonl", "--dataset", str(dataset),
         "--strategies", "isolated", "--instances", "1", "--groups", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fanout: error:")]
    assert len(errors) == 1 and "cannot write" in errors[0] and "Traceback" not in proc.stderr
    shutil.rmtree(out, ignore_errors=True)
