"""What the decode caches under ORCH_HOME/cache hold, and removing the ones no job will read again.

Nothing else ever removes a cache: a changed folder gets a new one (its key is the file list with
sizes and times) and a new decode version leaves the old files unread, so a lab's cache only grows.
Each cache has a small JSON note beside it (the folder, image size and count, the decode version),
written when it is built, and its modification time is its last use (a job that reads it touches it).
A cache is stale when the decode that made it is no longer orch's, when its folder is gone, or when
no job has read it for a while. Removing one a running job has open is safe: the job keeps its
mapping, and the next job decodes the folder again.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.atomic import exclusive_lock, is_temp_name
from shared.data.cache import CACHE_VERSION, lock_path, note_path

CACHE_NAME = re.compile(r"^[0-9a-f]{40}-(?P<size>\d+)px-(?P<images>\d+)\.npy$")
DAY_S = 86_400.0
ABANDONED_TEMP_S = 3_600.0  # a build writes its temp file chunk by chunk; one untouched for an hour died


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    bytes: int
    last_used: float  # seconds since the epoch: the file's mtime, touched by every job that reads it
    size: int  # px
    images: int
    folder: str | None  # None: built before orch kept a note, and not read since (or the note was lost)
    version: int | None

    def stale_because(self, now: float, unused_s: float) -> str | None:
        """Why no job will read this cache again (or is unlikely to), or None to keep it."""
        if self.version is not None and self.version != CACHE_VERSION:
            return f"made by an older decode (v{self.version}; now v{CACHE_VERSION})"
        if self.version is None:  # mostly the first decode's (v1): no read by an orch since, which notes each
            return "made by an older orch, and not read since (no note)"
        if self.folder is not None and not Path(self.folder).is_dir():
            return "its folder is gone"
        if now - self.last_used > unused_s:
            return f"unused for {(now - self.last_used) / DAY_S:.0f} days"
        return None

    def as_row(self, now: float) -> dict[str, Any]:
        return {"folder": self.folder or "(unknown: built by an older orch)", "px": self.size,
                "images": self.images, "mb": round(self.bytes / 1e6, 1),
                "last_used_days": round((now - self.last_used) / DAY_S, 1), "file": self.path.name}


def list_caches(cache_dir: Path) -> list[CacheEntry]:
    """The decode caches in `cache_dir`, most recently used first."""
    found = []
    for path in Path(cache_dir).glob("*.npy"):
        named = CACHE_NAME.match(path.name)
        if named is None:
            continue
        try:
            st = path.stat()
        except OSError:  # removed meanwhile
            continue
        note = _read_note(path)
        found.append(CacheEntry(path, st.st_size, st.st_mtime, int(named["size"]), int(named["images"]),
                                note.get("folder"), note.get("version")))
    return sorted(found, key=lambda entry: -entry.last_used)


def _read_note(path: Path) -> dict[str, Any]:
    try:
        note = json.loads(note_path(path).read_text())
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def remove(entry: CacheEntry) -> bool:
    """Remove the cache and its note; False if a job is building it right now (its lock is held).
    The lock file stays: a job may be waiting on it, and a new one would let two builders in at once."""
    try:
        with exclusive_lock(lock_path(entry.path), wait=False):
            entry.path.unlink(missing_ok=True)
            note_path(entry.path).unlink(missing_ok=True)
    except BlockingIOError:
        return False
    return True


def abandoned_builds(cache_dir: Path, now: float) -> list[Path]:
    """Temp files of builds whose process died (a live build writes to its file every few seconds)."""
    found = []
    for path in Path(cache_dir).glob(".*.npy.*"):
        try:
            if is_temp_name(path.name) and now - path.stat().st_mtime > ABANDONED_TEMP_S:
                found.append(path)
        except OSError:
            continue
    return found


def remove_orphaned_locks(cache_dir: Path, now: float) -> int:
    """Remove the lock files of caches that are gone (`remove` leaves them, for a job that may be
    waiting on one): those untouched for an hour that no process holds. A process that opened one
    just before it went would build beside the next one, and the atomic rename keeps the cache whole."""
    removed = 0
    for lock in Path(cache_dir).glob("*.lock"):
        try:
            if lock.with_suffix(".npy").exists() or now - lock.stat().st_mtime <= ABANDONED_TEMP_S:
                continue
            with exclusive_lock(lock, wait=False):
                lock.unlink()
            removed += 1
        except (OSError, BlockingIOError):
            continue
    return removed


def prune(cache_dir: Path, unused_days: float, everything: bool = False) -> dict[str, Any]:
    """Remove the stale caches (all of them with `everything`) and abandoned builds' temp files.
    Returns what was removed, with why, what was left because a job is building it, how many caches
    are kept (in use lately), and the megabytes freed."""
    now = time.time()
    removed, busy, freed, kept = [], [], 0, 0
    for entry in list_caches(cache_dir):
        why = "--all" if everything else entry.stale_because(now, unused_days * DAY_S)
        if why is None:
            kept += 1
            continue
        if remove(entry):
            removed.append({**entry.as_row(now), "why": why})
            freed += entry.bytes
        else:
            busy.append(entry.path.name)
    for temp in abandoned_builds(cache_dir, now):
        try:
            size = temp.stat().st_size
            temp.unlink()
        except OSError:
            continue
        removed.append({"file": temp.name, "mb": round(size / 1e6, 1), "why": "a build that did not finish"})
        freed += size
    locks = remove_orphaned_locks(cache_dir, now)  # empty files: counted, not listed
    return {"removed": removed, "busy": busy, "kept": kept, "freed_mb": round(freed / 1e6, 1), "locks_removed": locks}
