"""The README's Python blocks type-check under ``mypy --strict``: its imports and types stay true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT


def typecheck_tree(at: Path) -> Path:
    """A folder holding ``fanout/`` as mypy must see it: fanout/*.py and the three mapped folders."""
    package = at / "fanout"
    package.mkdir(parents=True)
    for file in (ROOT / "fanout").iterdir():
        if file.suffix == ".py" or file.name == "py.typed":
            (package / file.name).symlink_to(file)
    for folder in ("agents", "orchestrator", "evals"):
        (package / folder).symlink_to(ROOT / folder, target_is_directory=True)
    return at


BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [textwrap.dedent(code) for _, code in BLOCK.findall(text)]


def test_every_python_block_in_the_readme_passes_mypy_strict(tmp_path: Path) -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 4  # the library, structured output, a sub-agent, an application
    files = []
    for index, code in enumerate(blocks):
        path = tmp_path / f"readme_block_{index}.py"
        path.write_text(code)
        files.append(str(path))
    # From the repository root, so mypy reads the project's settings for untyped dependencies;
    # mypy reads fanout itself through a tree of links, as `make typecheck` lays it out.
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *files],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "MYPYPATH": str(typecheck_tree(tmp_path / "tree"))},
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


# Names the README's prose tells users to import or call, beyond those its code blocks import.
DOCUMENTED = [
    "CallPolicy", "EvalReport", "FallbackBackend", "LangChainBackend", "ModelAccess",
    "OpenAIBackend", "StrategyChoice", "Prices", "Profile", "RunResult", "ScriptedBackend", "SubTask", "UserError",
    "configure_logging", "evaluate", "graph_sub_agent", "open_checkpoint", "RunContext", "RunHooks",
    "RunPlan", "Stages", "GraphKit", "Finding", "FanoutState", "rank_findings",
]  # fmt: skip


def test_names_the_readme_documents_are_importable_from_fanout() -> None:
    import fanout

    text = (ROOT / "README.md").read_text()
    for name in DOCUMENTED:
        assert re.search(rf"\b{name}\b", text), name
        assert name in fanout.__all__ and getattr(fanout, name) is not None, name
    for name in fanout.__all__:
        getattr(fanout, name)  # every export resolves
