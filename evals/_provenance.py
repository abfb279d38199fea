"""Where a result came from: versions, model file and hash, hardware, date and command line.

A report pasted into a design doc is read months later by someone who must know whether the
numbers still apply; every run of a sweep (a resumed one too) records this beside its results.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import shlex
import sys
from contextvars import ContextVar
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from fanout.agents._secrets import scrub
from fanout.agents.backend import Backend

__all__ = ["COMMAND_LINE", "Provenance", "collect_provenance", "file_sha256"]

COMMAND_LINE: ContextVar[str | None] = ContextVar("fanout_command_line", default=None)
"""The command line being run, set by the ``fanout`` entry point (sys.argv may be a test runner's)."""


class Provenance(BaseModel):
    """One run of a sweep: what produced its records."""

    model_config = ConfigDict(frozen=True)

    date: str
    """When the run started, ISO 8601 in UTC."""
    command: str
    """The exact command line (or "library call")."""
    fanout_version: str
    """fanout's version."""
    llama_cpp_version: str | None
    """llama-cpp-python's version (None when it is not installed)."""
    python: str
    """Python's version."""
    model: str
    """The backend's model name."""
    model_file: str | None = None
    """The GGUF file of an in-process model."""
    model_sha256: str | None = None
    """Its SHA-256, so a re-quantized file with the same name is told apart."""
    endpoint: str | None = None
    """Where an OpenAI-compatible model was served (credentials removed)."""
    hardware: str
    """CPU model, cores and memory, and GPU offload."""
    platform: str
    """Operating system and architecture."""


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, computed once per process for an unchanged file (GGUFs are large)."""
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _gpu() -> str:
    try:
        import llama_cpp
    except ImportError:
        return "no llama.cpp"
    supported = bool(llama_cpp.llama_supports_gpu_offload())
    return "llama.cpp built with GPU offload" if supported else "llama.cpp CPU-only build"


def _hardware(backend: Backend) -> str:
    memory = _memory_gib()
    parts = [f"{_cpu_model()}, {os.cpu_count()} cores"]
    if memory is not None:
        parts.append(f"{memory:.0f} GiB RAM")
    parts.append(_gpu())
    layers = getattr(backend, "n_gpu_layers", None)
    if isinstance(layers, int):
        parts.append(f"{'all' if layers < 0 else layers} layers on GPU")
    return ", ".join(parts)


def _innermost(backend: Any) -> Any:
    """The backend a wrapper (faults, fallback) runs first."""
    while True:
        inner = getattr(backend, "inner", None) or getattr(backend, "primary", None)
        if inner is None:
            return backend
        backend = inner


def collect_provenance(backend: Backend, *, command: str | None = None) -> Provenance:
    """What to record about a run on `backend` started now by `command` (default: this process's)."""
    model = _innermost(backend)
    path = getattr(model, "path", None)
    base_url = getattr(model, "base_url", None)
    if command is None:
        command = COMMAND_LINE.get()
    if command is None:
        command = (
            shlex.join(["fanout", *sys.argv[1:]])
            if Path(sys.argv[0]).name == "fanout"
            else "library call"
        )
    command = scrub(command)  # a URL typed with its password, a key given as an option
    endpoint = None
    if isinstance(base_url, str):
        from fanout.agents._fleet import redact_url

        endpoint = redact_url(base_url)
    return Provenance(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=command,
        fanout_version=_version("fanout") or "unknown",
        llama_cpp_version=_version("llama_cpp_python"),
        python=platform.python_version(),
        model=backend.name,
        model_file=str(path) if isinstance(path, Path) else None,
        model_sha256=file_sha256(path) if isinstance(path, Path) else None,
        endpoint=endpoint,
        hardware=_hardware(model),
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
    )
