"""`orch data cache`: each decode cache says which folder made it, a read marks it used, and
--prune removes only what no job will read again (never one a job is building)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from shared.atomic import exclusive_lock
from shared.data import load_or_build, scan, write_synthetic
from shared.data.cache import CACHE_VERSION, lock_path, note_path
from shared.data.cache_admin import DAY_S, list_caches, prune


def _folder(root: Path, name: str, n: int = 6) -> list[Path]:
    write_synthetic(root / name, classes=["cat", "dog"], counts={"train": n}, size=16, seed=n)
    return scan(root / name / "train").files


def _age(path: Path, days: float) -> None:
    then = time.time() - days * DAY_S
    os.utime(path, (then, then))


def test_a_cache_notes_its_folder_and_every_read_marks_it_used(tmp_path: Path) -> None:
    files, cache = _folder(tmp_path, "a"), tmp_path / "cache"
    load_or_build(files, 16, cache, folder=tmp_path / "a" / "train")
    [entry] = list_caches(cache)
    note = json.loads(note_path(entry.path).read_text())
    assert (note["folder"], note["size"], note["images"], note["version"]) == (
        str((tmp_path / "a" / "train").resolve()), 16, 6, CACHE_VERSION)
    assert (entry.folder, entry.size, entry.images, entry.bytes) == (note["folder"], 16, 6, entry.path.stat().st_size)
    _age(entry.path, 40)
    assert list_caches(cache)[0].last_used < time.time() - 39 * DAY_S
    _, built = load_or_build(files, 16, cache, folder=tmp_path / "a" / "train")  # a job reads it
    assert not built and time.time() - list_caches(cache)[0].last_used < 60
    note_path(entry.path).unlink()  # as an orch before notes left it: a read proves it current, and notes it
    load_or_build(files, 16, cache, folder=tmp_path / "a" / "train")
    again = json.loads(note_path(entry.path).read_text())
    assert again == {**note, "built_at": None} and prune(cache, unused_days=30)["kept"] == 1


def test_prune_removes_only_what_no_job_will_read_again(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    built = {}
    for name, n in (("recent", 4), ("unused", 6), ("older_decode", 8), ("gone", 10), ("building", 12), ("no_note", 14)):
        load_or_build(_folder(tmp_path, name, n), 16, cache, folder=tmp_path / name / "train")
        built[name] = next(e.path for e in list_caches(cache) if e.images == n)
    _age(built["unused"], 31)
    note = note_path(built["older_decode"])
    note.write_text(json.dumps({**json.loads(note.read_text()), "version": CACHE_VERSION - 1}))
    note_path(built["no_note"]).unlink()  # the upgrade walk: the first orch's caches, which none reads now
    (tmp_path / "gone" / "train").rename(tmp_path / "moved")
    _age(built["building"], 99)
    dead_build, live_build = cache / f".{built['recent'].name}.4242.tmp", cache / f".{built['gone'].name}.4343.tmp"
    dead_build.write_bytes(b"x" * 1000)
    live_build.write_bytes(b"x" * 10)
    _age(dead_build, 1)
    with exclusive_lock(lock_path(built["building"])):  # a job is decoding it right now
        done = prune(cache, unused_days=30)
    why = {row["file"]: row["why"] for row in done["removed"]}
    assert why == {built["unused"].name: "unused for 31 days",
                   built["older_decode"].name: f"made by an older decode (v{CACHE_VERSION - 1}; now v{CACHE_VERSION})",
                   built["gone"].name: "its folder is gone",
                   built["no_note"].name: "made by an older orch, and not read since (no note)",
                   dead_build.name: "a build that did not finish"}, why
    assert done["busy"] == [built["building"].name] and done["kept"] == 1
    left = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))
    assert left == sorted([built["recent"].name, note_path(built["recent"]).name, built["building"].name,
                           note_path(built["building"]).name, live_build.name])
    assert all(lock_path(path).exists() for path in built.values())  # a waiting job may hold one open
    everything = prune(cache, unused_days=30, everything=True)
    assert {row["why"] for row in everything["removed"]} == {"--all"} and list_caches(cache) == []


def test_prune_removes_the_locks_of_caches_gone_an_hour_that_no_process_holds(tmp_path: Path) -> None:
    """`--prune` removed a gone folder's cache and left its lock file, for good."""
    cache = tmp_path / "cache"
    for name, n in (("old", 4), ("held", 6), ("fresh", 8)):
        load_or_build(_folder(tmp_path, name, n), 16, cache, folder=tmp_path / name / "train")
    locks = {e.images: lock_path(e.path) for e in list_caches(cache)}
    assert prune(cache, unused_days=30, everything=True)["locks_removed"] == 0  # just built: a job may wait on one
    for images in (4, 6):
        _age(locks[images], 2 / 24)
    with exclusive_lock(locks[6]):  # a job about to build it again
        assert prune(cache, unused_days=30)["locks_removed"] == 1
    assert [images for images, lock in sorted(locks.items()) if lock.exists()] == [6, 8]
