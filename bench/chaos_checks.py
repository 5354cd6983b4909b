"""What the chaos bench checks in the store once the study has ended: no epoch written by a stale attempt,
and no checkpoint file that disagrees with the row that names it."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def stale_attempt_epochs(store: Any, job_ids: list[int]) -> int:
    """Epochs recorded by more than one live attempt of a job.

    The store keeps one row per (job, epoch), so a second live attempt shows as an epoch recorded by an
    older attempt than an earlier epoch was: the older attempt was still writing after its successor
    had taken over. A resume after a kill only ever moves to a newer attempt.
    """
    from sqlalchemy import select

    from shared.store import Epoch

    with store.session() as s:
        rows = s.execute(select(Epoch.job_id, Epoch.epoch, Epoch.attempt).where(Epoch.job_id.in_(job_ids))
                         .order_by(Epoch.job_id, Epoch.epoch)).all()
    stale, newest = 0, {}
    for job_id, _epoch, attempt in rows:
        if attempt < newest.get(job_id, 0):
            stale += 1
        newest[job_id] = max(newest.get(job_id, 0), attempt)
    return stale


def checkpoint_mismatches(store: Any, job_ids: list[int]) -> tuple[int, bool]:
    """(checkpoint rows whose file is missing, unreadable, of another epoch or of another digest; whether
    digests were compared). The digest column comes with the fenced checkpoint files (issue 9 item 2):
    until the store has it, the file's own epoch is compared with the row's."""
    from sqlalchemy import select

    from shared.store import Checkpoint

    with store.session() as s:
        rows = list(s.scalars(select(Checkpoint).where(Checkpoint.job_id.in_(job_ids))))
    has_digest = hasattr(Checkpoint, "digest")
    bad = sum(not checkpoint_agrees(row, has_digest) for row in rows)
    return bad, has_digest


def checkpoint_agrees(row: Any, has_digest: bool) -> bool:
    path = Path(row.path)
    if not path.is_file():
        return False
    if has_digest and row.digest:
        return file_digest(path) == row.digest
    return checkpoint_epoch(path) == row.epoch


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_epoch(path: Path) -> int | None:
    from shared.engine.checkpoint import load_checkpoint
    from shared.errors import CheckpointError

    try:
        return int(load_checkpoint(path)["epoch"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None
