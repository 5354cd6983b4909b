"""Writing a file so that a reader sees the old file or the whole new one, never a part.

The one temp-file-and-rename of the project: the temp file sits beside the target (one file
system, so the rename is atomic), is named `.<name>.<pid>.tmp` (hidden, and unique per process
so that two writers never share one), is fsynced before the rename, and is removed when the
write fails, leaving the previous file as it was.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from shared.errors import DiskFull, disk_full_in, disk_full_message

TEMP_SUFFIX = ".tmp"


def is_temp_name(name: str) -> bool:
    """A name `atomic_path` gives its temp files (hidden, ending in .tmp): a half-written file."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def temp_path(path: Path) -> Path:
    """The temp file `atomic_path` uses for `path` in this process."""
    return path.parent / f".{path.name}.{os.getpid()}{TEMP_SUFFIX}"


@contextmanager
def atomic_path(path: Path | str, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temp path to fill (by any means: a library that wants a file name, a hard link);
    on success it replaces `path`, on an exception it is removed. A full disk, whatever reported it
    (torch.save says "unexpected pos 15886912 vs 15886808"), is DiskFull naming the folder."""
    path = Path(path)
    tmp = temp_path(path)
    tmp.unlink(missing_ok=True)  # left by a dead process that had this pid
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, DiskFull) or disk_full_in(exc) is None:
            raise
        raise DiskFull(f"{path.name}: {disk_full_message(str(path.parent))}") from exc
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_write(path: Path | str, mode: str = "wb", **open_args: Any) -> Iterator[IO[Any]]:
    """`with atomic_write(p, "w") as fh: fh.write(...)`: `p` changes only if the block succeeds."""
    with atomic_path(path, fsync=False) as tmp, tmp.open(mode, **open_args) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def exclusive_lock(lock: Path, *, wait: bool = True) -> Iterator[None]:
    """An exclusive lock across processes (flock on `lock`, created if missing), for work that one
    process does and the others then read: a decode cache's build, the bf16 probe. Where there is no
    flock (Windows) each process does the work, and the atomic rename still keeps the result whole.
    `wait=False`: BlockingIOError at once if another process holds it."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with Path(lock).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
