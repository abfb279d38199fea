"""Loading documents from files, folders and globs, with one-line errors for every bad input.

Reading stops at the first bad file, before any model runs, so no work is lost to a typo.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from fanout.agents.errors import UserError

from .request import Document

__all__ = ["MAX_FILE_BYTES", "SUPPORTED_SUFFIXES", "load_documents"]

SUPPORTED_SUFFIXES = (".txt", ".md")
MAX_FILE_BYTES = 10 * 1024 * 1024
"""Largest document file read (10 MiB): bigger ones are refused rather than exhausting memory."""


def _expand(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise UserError(f"{spec}: folder holds no files")
        return files
    if path.exists():
        return [path]
    if glob.has_magic(spec):
        matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not matches:
            raise UserError(f"{spec}: glob matched no files")
        return matches
    raise UserError(f"{spec}: no such file or folder")


def _read(path: Path, max_bytes: int) -> str:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise UserError(f"{path}: unsupported file type (fanout reads .txt and .md)")
    size = path.stat().st_size
    if size > max_bytes:
        raise UserError(f"{path}: {size} bytes is over the {max_bytes}-byte limit per document")
    data = path.read_bytes()
    if b"\x00" in data:
        raise UserError(f"{path}: binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise UserError(f"{path}: file is empty")
    return text


def load_documents(specs: list[str], *, max_bytes: int = MAX_FILE_BYTES) -> list[Document]:
    """Read every file named by `specs` (files, folders, globs) into documents.

    Ids are file names, or paths relative to the working folder where two files share a name.
    """
    if not specs:
        raise UserError("no documents given")
    paths: list[Path] = []
    for spec in specs:
        for path in _expand(spec):
            resolved = path.resolve()
            if any(p.resolve() == resolved for p in paths):
                raise UserError(f"{path}: given more than once")
            paths.append(path)
    texts = [_read(p, max_bytes) for p in paths]
    names = [p.name for p in paths]
    ids = [
        name if names.count(name) == 1 else os.path.relpath(path)
        for name, path in zip(names, paths, strict=True)
    ]
    return [
        Document(id=i, text=t, metadata={"path": str(p)})
        for i, t, p in zip(ids, texts, paths, strict=True)
    ]
