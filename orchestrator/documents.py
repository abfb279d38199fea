"""Loading documents from files, folders and globs, with one-line errors for every bad input.

Reading stops at the first bad file, before any model runs, so no work is lost to a typo. Only
regular files are read, and never more than the size limit: a FIFO would block forever and a link to
``/dev/zero`` would never end, and ``stat()`` reports a size of 0 for both.

Symbolic links are read for what they point to, and checked for that. The target must be a .txt
or .md file, whatever the link is called (a ``host.txt`` linking to ``/etc/hostname`` is refused:
its text would go to the model, a server perhaps). A link found inside a folder or by a glob must
point inside that folder (the glob's fixed leading folders): a folder of downloaded documents
cannot reach out for ``~/.ssh``. A link named on the command line may point anywhere else: you
named it.
"""

from __future__ import annotations

import errno
import glob
import os
import stat
from collections import Counter
from pathlib import Path

from fanout.agents.errors import UserError

from .request import Document

__all__ = ["MAX_FILE_BYTES", "SUPPORTED_SUFFIXES", "load_documents"]

SUPPORTED_SUFFIXES = (".txt", ".md")
MAX_FILE_BYTES = 10 * 1024 * 1024
"""Largest document file read (10 MiB): bigger ones are refused rather than exhausting memory."""

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _expand(spec: str) -> list[tuple[Path, Path | None]]:
    """(file, the folder its links must stay in: None for a file named directly) for a spec."""
    path = Path(spec)
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise UserError(f"{spec}: folder holds no files")
        return [(p, path) for p in files]
    if path.exists():
        return [(path, None)]
    if glob.has_magic(spec):
        matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not matches:
            raise UserError(f"{spec}: glob matched no files")
        return [(p, _glob_root(spec)) for p in matches]
    raise UserError(f"{spec}: no such file or folder")


def _glob_root(spec: str) -> Path:
    """The folders a glob names before its first wildcard (where its matches must stay)."""
    fixed: list[str] = []
    for part in Path(spec).parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _check_target(path: Path, target: Path, root: Path | None) -> None:
    """Refuse a link whose target is no .txt/.md file, or leaves the folder it was found in.

    `target` is `path` resolved; for a file that is no link, both checks pass by themselves.
    """
    if (
        target.suffix.lower() not in SUPPORTED_SUFFIXES
        and path.suffix.lower() in SUPPORTED_SUFFIXES
    ):
        raise UserError(f"{path}: a link to {target}, which is not a .txt or .md file")
    if root is not None and not target.is_relative_to(root):
        raise UserError(
            f"{path}: a link to {target}, outside {root} (a link found in a folder must stay in it)"
        )


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """At most `max_bytes` of a regular file, checked on the open descriptor (no race with stat)."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer before we can see what it is.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _os_error(path, exc) from None
    with os.fdopen(fd, "rb", buffering=0) as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path}: {_kind(info.st_mode)}, not a regular file")
        parts: list[bytes] = []
        size = 0
        try:
            while (
                size <= max_bytes
            ):  # the file may grow while we read: stop one byte past the limit
                part = file.read(max_bytes + 1 - size)
                if not part:
                    break
                parts.append(part)
                size += len(part)
        except OSError as exc:
            raise _os_error(path, exc) from None
    if size > max_bytes:
        shown = max(size, info.st_size)
        raise UserError(f"{path}: {shown} bytes is over the {max_bytes}-byte limit per document")
    return b"".join(parts)


def _os_error(path: Path, exc: OSError) -> UserError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return UserError(f"{path}: permission denied")
    return UserError(f"{path}: cannot read ({exc.strerror or exc})")


def _read(path: Path, max_bytes: int) -> str:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise UserError(f"{path}: unsupported file type (fanout reads .txt and .md)")
    data = _read_bounded(path, max_bytes)
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
    if max_bytes < 1:
        raise UserError(f"the size limit per document must be at least 1 byte, not {max_bytes}")
    paths: list[Path] = []
    seen: set[Path] = set()
    for spec in specs:
        expanded = _expand(spec)
        roots = {root: root.resolve() for _, root in expanded if root is not None}
        for path, root in expanded:
            resolved = path.resolve()
            _check_target(path, resolved, roots[root] if root is not None else None)
            if resolved in seen:
                raise UserError(f"{path}: given more than once")
            seen.add(resolved)
            paths.append(path)
    texts = [_read(p, max_bytes) for p in paths]
    names = Counter(p.name for p in paths)
    ids = [p.name if names[p.name] == 1 else os.path.relpath(p) for p in paths]
    return [
        Document(id=i, text=t, metadata={"path": str(p)})
        for i, t, p in zip(ids, texts, paths, strict=True)
    ]
