"""The wheel installs one top-level import name, `fanout`, and lives beside packages named `agents`.

The three top-level folders become `fanout.agents`, `fanout.orchestrator` and `fanout.evals` through
setuptools' package-dir mapping, with no symlink in the repository: a checkout with
``core.symlinks=false`` or a ZIP download builds and imports the same.
"""

import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT
from tests.test_imports import package_dirs


def test_every_package_folder_is_packaged_and_nothing_is_a_link() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {"fanout"}
    for name, folder in package_dirs().items():
        if name == "fanout":
            continue
        for init in folder.rglob("__init__.py"):
            found.add(".".join([name, *init.parent.relative_to(folder).parts]))
    assert found == listed  # a package missing from the list would be missing from the wheel
    tracked = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [line for line in tracked if line.startswith("120000")] == []  # no symlink is tracked


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
def test_an_sdist_unpacked_without_git_builds_a_wheel_that_imports(tmp_path: Path) -> None:
    """What a ZIP download or a symlink-less checkout gives: plain folders, no git, no links."""
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(ROOT)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (sdist,) = dist.glob("fanout-*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "src", filter="data")
    (source,) = (tmp_path / "src").iterdir()
    assert not any(p.is_symlink() for p in source.rglob("*"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(wheels)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("fanout-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    probe = (
        "import fanout.agents.backend, fanout.orchestrator.coordinator, fanout.evals.suites.nq\n"
        "print(fanout.orchestrator.coordinator.__file__)\n"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().startswith(str(target / "fanout" / "orchestrator"))


def test_the_editable_install_maps_the_folders_from_anywhere() -> None:
    """This test run's own install is editable: each import name resolves to its top-level folder,
    from the repository root (where the fanout/ folder alone would shadow it) and from elsewhere."""
    probe = "import fanout.agents, fanout.evals.bench; print(fanout.agents.__file__)"
    for cwd in (ROOT, ROOT / "tests"):
        found = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, cwd=cwd, check=True
        )
        assert found.stdout.strip() == str(ROOT / "agents" / "__init__.py")


@pytest.mark.integration
def test_wheel_has_only_the_fanout_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fanout"}
    for module in ("agents/llama_cpp.py", "orchestrator/kit.py", "evals/runner.py"):
        assert f"fanout/{module}" in names  # the mapped folders are packed under fanout/
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
