"""Scoring runs without torch: shard slices, label checks, CSV parts and their atomic assembly.

The CLI (checks at submit time) and the worker (the same checks, then the work) share these, and
the tests exercise them without a model. A scoring run is a parent job plus N shard jobs; shard i
scores a contiguous run of the folder's ids in numeric order, so the final CSV is the shards' part
files concatenated in shard order.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from shared.data.layouts import Listing
from shared.errors import DataError

T = TypeVar("T")
PROB_DIGITS = 6


def shard_slice(items: Sequence[T], shards: int, index: int) -> list[T]:
    """Shard `index` of `shards`: a contiguous, balanced run, so shards concatenate in order."""
    if not 0 <= index < shards:
        raise ValueError(f"shard index {index} is not in 0..{shards - 1}")
    n = len(items)
    return list(items[index * n // shards:(index + 1) * n // shards])


def listing_items(listing: Listing) -> list[tuple[int, Path]]:
    """(id, file) pairs in id order: stems for a numbered folder, positions for a labelled one."""
    return sorted(zip(listing.ids, listing.files), key=lambda item: item[0])


def check_shards(shards: int, listing: Listing) -> None:
    if shards > len(listing.files):
        raise DataError(f"--shards: {shards} is more than the {len(listing.files)} images in {listing.folder}; "
                        f"use 1 to {len(listing.files)}")


def check_label_classes(labels: dict[int, int], classes: Sequence[str]) -> None:
    """An id,label CSV must use the checkpoint's class indices: 0..N-1 for its N classes."""
    count = max(labels.values()) + 1
    if count != len(classes):
        raise DataError(f"--labels: the labels have {count} classes (0..{count - 1}) but the checkpoint has "
                        f"{len(classes)} ({', '.join(classes)}); score with a checkpoint trained on the same classes")


def check_folder_classes(listing: Listing, classes: Sequence[str]) -> None:
    """A labelled folder's class names must be the checkpoint's."""
    if listing.labels is None:
        return
    if sorted(listing.classes) != sorted(classes):
        raise DataError(f"--data: the folder's classes ({', '.join(listing.classes)}) are not the checkpoint's "
                        f"({', '.join(classes)}); score with a checkpoint trained on the same classes")


def check_labels_cover(labels: dict[int, int], listing: Listing) -> None:
    if not any(i in labels for i in listing.ids):
        raise DataError(f"--labels: none of the {len(listing.ids)} ids in {listing.folder} has a label")


def truth_for(listing: Listing, classes: Sequence[str], labels: dict[int, int] | None) -> dict[int, int] | None:
    """id -> true class index (the checkpoint's): from the labels CSV, else the folder's own labels."""
    if labels is not None:
        return labels
    if listing.labels is None:
        return None
    index = {c: i for i, c in enumerate(classes)}
    return {i: index[listing.classes[y]] for i, y in zip(listing.ids, listing.labels)}


def count_correct(ids: Sequence[int], predicted: Sequence[int], truth: dict[int, int] | None) -> tuple[int, int]:
    """(correct, labelled) over the ids that have a true label."""
    if truth is None:
        return 0, 0
    pairs = [(p, truth[i]) for i, p in zip(ids, predicted) if i in truth]
    return sum(p == y for p, y in pairs), len(pairs)


def header_line(classes: Sequence[str], probs: bool) -> str:
    return "id,label" + "".join(f",prob_{c}" for c in classes if probs) + "\n"


def format_rows(ids: Sequence[int], labels: Sequence[int], probs: Iterable[Sequence[float]] | None) -> str:
    """CSV rows `id,label[,p0,p1...]`, one per image, in the order given."""
    if probs is None:
        return "".join(f"{i},{y}\n" for i, y in zip(ids, labels))
    return "".join(f"{i},{y}," + ",".join(f"{p:.{PROB_DIGITS}f}" for p in row) + "\n"
                   for i, y, row in zip(ids, labels, probs))


def write_atomic(path: Path, parts: Iterable[str | Path]) -> None:
    """Write strings and the contents of files to `path` via a temp file in the same folder + rename.

    A reader (or a failure half-way) never sees a partial file at `path`.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with tmp.open("w", newline="") as out:
            for part in parts:
                out.write(part if isinstance(part, str) else Path(part).read_text())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def part_path(parent_dir: Path, shard: int) -> Path:
    return Path(parent_dir) / "shards" / f"{shard}.csv"


@dataclass(frozen=True)
class ShardState:
    """What the parent needs to know of one shard job."""

    job_id: int
    shard: int
    status: str
    result: dict[str, Any] | None
    error: str | None = None

    @classmethod
    def of(cls, job: Any) -> "ShardState":
        """From a shard's Job row (or anything with its columns)."""
        return cls(job.id, job.shard or 0, str(job.status), job.result, job.error)

    @property
    def done(self) -> bool:
        """Its part file is written and recorded: a retry or redelivery need not score it again."""
        return bool(self.result and self.result.get("part"))


def parent_outcome(shards: Sequence[ShardState]) -> tuple[str, str | None]:
    """('complete' | 'failed' | 'pending', reason): can the CSV be assembled, or never without a retry?"""
    if shards and all(s.done for s in shards):
        return "complete", None
    ended = [s for s in shards if s.status in ("failed", "cancelled") and not s.done]
    if ended:
        first = min(ended, key=lambda s: s.shard)
        return "failed", shard_error(first.shard, first.job_id, first.error or first.status)
    return "pending", None


def shard_error(shard: int, job_id: int, reason: str) -> str:
    return f"shard {shard} (job {job_id}): {reason}"


def assemble(out: Path, shards: Sequence[ShardState], *, header: str | None) -> dict[str, Any]:
    """Concatenate the shards' parts (in shard order) into `out`, atomically; the run's totals."""
    ordered = sorted(shards, key=lambda s: s.shard)
    parts = [Path(s.result["part"]) for s in ordered if s.result]
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise DataError(f"score parts missing: {', '.join(map(str, missing[:3]))}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(out), ([header] if header else []) + parts)
    return totals([s.result or {} for s in ordered])


def totals(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """n, accuracy over every labelled image, and images/s per worker (n over summed shard time)."""
    n = sum(r.get("n", 0) for r in results)
    labelled = sum(r.get("labelled", 0) for r in results)
    correct = sum(r.get("correct", 0) for r in results)
    seconds = sum(r.get("seconds", 0.0) for r in results)
    # what arithmetic ran: one name when every shard agreed (int8 may fall back shard by shard)
    ran = sorted({r["precision"] for r in results if r.get("precision")})
    fallbacks = sorted({r["int8_fallback"] for r in results if r.get("int8_fallback")})
    return {"n": n, "accuracy": correct / labelled if labelled else None,
            "labelled": labelled, "images_per_s": n / seconds if seconds > 0 else None,
            "precision": ",".join(ran) or None, **({"int8_fallback": fallbacks[0]} if fallbacks else {})}
