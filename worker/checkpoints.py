"""Fenced checkpoint files: each attempt writes its own, and the store's rows say which are current.

An attempt under lease token T writes epoch N to `ckpt-e{N}-t{T}.pt` in the job's folder; its
fenced store write then makes that file the current one (and the one it replaces the previous one).
A stale attempt's write is refused, so its files never become current, and nothing ever finds a
checkpoint by a fixed name: resume and scoring load the file the store names, after checking it
against the digest recorded with it. Older files of this job and of earlier tokens are deleted,
keeping the newest two good ones and the best.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

from shared.store import Lease

log = logging.getLogger("orch.worker")
FILE = re.compile(r"ckpt-e(?P<epoch>\d+)-t(?P<token>\d+)\.pt")
# a checkpoint being written (shared/atomic.py's temp name): left behind by an attempt killed mid-write
TEMP = re.compile(r"\.ckpt-e\d+-t(?P<token>\d+)\.pt\.\d+\.tmp")
RESUME_ORDER = ("last", "previous")  # the newest first; a corrupt newest resumes from the one before


def file_name(token: int) -> Callable[[int], str]:
    """The name of epoch N's file for the attempt holding `token`."""
    return lambda epoch: f"ckpt-e{epoch}-t{token}.pt"


def digest(path: Path) -> str:
    """sha256 of the file: recorded with its row, checked before a resume, compared by the chaos bench."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def problem_with(path: Path, recorded: str | None) -> str | None:
    """Why the file the store names cannot be resumed from, or None if it can."""
    if not path.is_file():
        return "the file is missing"
    if recorded is not None and digest(path) != recorded:
        return "its contents differ from the digest recorded when it was written (corrupt or replaced)"
    return None


def resume_point(lease: Lease) -> tuple[Path | None, set[str]]:
    """(the store-named file to resume from, or None to start afresh; the files found broken).

    Each file passed over is a warning in the job's history."""
    rows = lease.checkpoints()
    broken: set[str] = set()
    for tag in RESUME_ORDER:
        row = rows.get(tag)
        if row is None:
            continue
        problem = problem_with(Path(row.path), row.digest)
        if problem is None:  # said in the history: which epoch this attempt goes on from
            lease.add_event("info", f"resumed from the checkpoint of epoch {row.epoch}")
            return Path(row.path), broken
        broken.add(row.path)
        message = f"checkpoint of epoch {row.epoch} ({Path(row.path).name}): {problem}; not resumed from"
        log.warning("job %s: %s", lease.job_id, message)
        lease.add_event("warning", message)
    if broken:
        lease.add_event("warning", "no good checkpoint left: training starts over")
    return None, broken


def prune(lease: Lease, folder: Path) -> list[Path]:
    """Delete this job's checkpoint files that are not current, of this attempt or earlier ones
    (never a later token's: a successor's file may not be recorded yet), and the half-written files
    of earlier attempts (a kill -9 mid-write left 100 MB of one). Returns those deleted."""
    keep = {Path(row.path).name for row in lease.checkpoints().values()}
    deleted = []
    for path in folder.glob("ckpt-e*-t*.pt"):
        match = FILE.fullmatch(path.name)
        if match and int(match["token"]) <= lease.token and path.name not in keep:
            path.unlink(missing_ok=True)
            deleted.append(path)
    for path in folder.glob(".ckpt-e*-t*.pt.*.tmp"):
        match = TEMP.fullmatch(path.name)
        if match and int(match["token"]) < lease.token:  # an earlier attempt's: it writes no more
            path.unlink(missing_ok=True)
            deleted.append(path)
    return deleted
