"""The wheel installs one top-level import name, `fanout`, and lives beside packages named `agents`."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(out)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("fanout-*.whl")
    return built


@pytest.mark.integration
def test_wheel_has_only_the_fanout_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fanout"}
    for module in ("agents/llama_cpp.py", "orchestrator/graph.py", "evals/runner.py"):
        assert f"fanout/{module}" in names  # the symlinked folders are packed as real files
    assert "fanout/evals/suites/keyvalue.py" in names
    assert "fanout/py.typed" in names


@pytest.mark.integration
def test_fanout_and_openai_agents_install_side_by_side(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py, fanout = venv / "bin" / "python", venv / "bin" / "fanout"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheel), "openai-agents"],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    probe = (
        "import agents, fanout\n"
        "from agents import Agent\n"
        "from fanout import Coordinator, Document, LlamaCppBackend, Request, evaluate\n"
        "import fanout.agents, fanout.orchestrator, fanout.evals\n"
        "assert 'site-packages/agents/' in agents.__file__, agents.__file__\n"
        "assert fanout.agents.__file__.endswith('fanout/agents/__init__.py')\n"
        "print(fanout.__version__)\n"
    )
    # Run from an empty folder: the repository's own agents/ folder must not be on the path.
    imported = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    version = subprocess.run([str(fanout), "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"fanout {imported.stdout.strip()}"
    question = "Who is the account manager?"
    args = ["run", str(EXAMPLES / "suppliers"), "-q", question, "--synthesis", "collect", "--json"]
    run = subprocess.run(
        [str(fanout), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Priya Shah" in run.stdout
