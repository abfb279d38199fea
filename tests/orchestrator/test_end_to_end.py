"""The real embedded model, in-process and through a real llama_cpp.server, on the examples."""

import json
import re
import subprocess
import sys

import pytest

from fanout.agents.openai import OpenAIBackend
from fanout.orchestrator import Coordinator, Request, load_documents
from tests.conftest import EXAMPLES, ROOT, LlamaServer

pytestmark = pytest.mark.integration

QUESTION = "Who is the account manager?"
EXPECTED = {"harbor.md": "Tom Becker", "lumen.md": "Ana Ribeiro", "northwind.md": "Priya Shah"}


def request() -> Request:
    return Request(
        documents=tuple(load_documents([str(EXAMPLES / "suppliers")])), question=QUESTION
    )


def test_in_process_model_answers_the_example(llama_backend) -> None:  # type: ignore[no-untyped-def]
    result = Coordinator(llama_backend).run(request())
    assert {a.document_id: a.answer for a in result.answers} == EXPECTED
    assert result.ok
    for doc_id, name in EXPECTED.items():
        assert f"{name} [{doc_id}]" in result.answer
    assert sorted(result.citations) == sorted(EXPECTED)
    assert result.usage.calls == 4 and result.usage.prompt_tokens > 500


def test_monolithic_runs_the_same_request_as_one_call(llama_backend) -> None:  # type: ignore[no-untyped-def]
    result = Coordinator(llama_backend, strategy="monolithic").run(request())
    assert result.usage.calls == 1
    assert result.sub_results[0].document_id is None
    assert result.answer


def test_openai_backend_against_real_server(llama_server: LlamaServer) -> None:
    backend = OpenAIBackend("gemma", base_url=llama_server.base_url, endpoint="completions")
    result = Coordinator(backend).run(request())
    assert {a.document_id: a.answer for a in result.answers} == EXPECTED
    assert result.usage.prompt_tokens > 500 and result.usage.completion_tokens > 0


def test_cli_json_output_and_exit_code() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-m", "fanout", "run", "examples/suppliers",
         "-q", QUESTION, "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # the plan line, and nothing else: no ResourceWarning, no Llama.__del__ traceback at exit
    assert [line for line in proc.stderr.splitlines() if not line.startswith("fanout: plan:")] == []
    result = json.loads(proc.stdout)
    assert {a["document_id"]: a["answer"] for a in result["answers"]} == EXPECTED
    assert result["usage"]["calls"] == 4


def test_cli_exit_1_names_the_failed_sub_agents() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fanout", "run", "examples/suppliers", "-q", QUESTION,
         "--timeout", "0.001", "--retries", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Missing: 3 of 3 sub-agents failed" in proc.stdout
    # the call's deadline, or on a loaded machine the sub-agent's (4 x 0.001 s) fires first
    assert re.search(r"harbor\.md \((BackendTimeout|SubAgentTimeout)", proc.stdout), proc.stdout
    assert "Traceback" not in proc.stderr
