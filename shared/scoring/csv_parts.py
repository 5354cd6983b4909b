"""A scoring run's CSV without torch: shard slices, rows, part files, the row checks and the totals.

Shard i scores a contiguous run of the folder's ids in numeric order, so the final CSV is the
shards' part files concatenated in shard order.
"""
from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from shared.atomic import atomic_write
from shared.data.layouts import Listing, class_index
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
    return sorted(zip(listing.ids, listing.files, strict=True), key=lambda item: item[0])


def ids_digest(ids: Iterable[int]) -> str:
    """sha256 of the ids in order: pinned at submit, recomputed from the assembled CSV."""
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def truth_for(listing: Listing, classes: Sequence[str], labels: dict[int, int] | None) -> dict[int, int] | None:
    """id -> true class index (the checkpoint's): from the labels CSV, else the folder's own labels."""
    if labels is not None:
        return labels
    if listing.labels is None:
        return None
    index = class_index(classes)
    return {i: index[listing.classes[y]] for i, y in zip(listing.ids, listing.labels, strict=True)}


def count_correct(ids: Sequence[int], predicted: Sequence[int], truth: dict[int, int] | None) -> tuple[int, int]:
    """(correct, labelled) over the ids that have a true label."""
    if truth is None:
        return 0, 0
    pairs = [(p, truth[i]) for i, p in zip(ids, predicted, strict=True) if i in truth]
    return sum(p == y for p, y in pairs), len(pairs)


def shard_hits(ids: Sequence[int], predicted: Sequence[int], truth: dict[int, int] | None,
               classes: Sequence[str]) -> dict[str, Any]:
    """Which of a shard's images it got right (shared/val_hits.py), where every one is labelled: the
    report pairs two training jobs' test scores image by image (orchestrator/analysis/image_error.py).
    `truth_sum`: the (id, true class name) pairs' digest, summed so that it does not depend on how the
    images were split into shards; the assembly adds the shards' up, mod 2^64."""
    if not ids or truth is None or any(i not in truth for i in ids):
        return {}
    from shared.val_hits import pack

    digest = sum(int.from_bytes(hashlib.sha256(f"{i}:{classes[truth[i]]}".encode()).digest()[:8], "big") for i in ids)
    return {"hits": pack([p == truth[i] for i, p in zip(ids, predicted, strict=True)]), "truth_sum": digest % 2 ** 64}


def assembled_hits(results: Sequence[dict[str, Any]], files_sha256: str) -> dict[str, Any] | None:
    """The run's hits over every shard's images in id order ({"set", "images", "hits"}: Score.hits),
    or None where a non-empty shard has none (an unlabelled image, or a shard from an orch before)."""
    from shared.val_hits import pack, unpack

    scored = [r for r in results if r.get("n")]
    if not scored or any("hits" not in r for r in scored):
        return None
    bits = [hit for r in scored for hit in unpack(r["hits"], r["n"])]
    truth = sum(r["truth_sum"] for r in scored) % 2 ** 64
    identity = hashlib.sha256(f"{files_sha256}|{truth}".encode()).hexdigest()[:16]
    return {"set": identity, "images": len(bits), "hits": pack(bits)}


def header_line(classes: Sequence[str], probs: bool, names: bool = False) -> str:
    """The header row; a class named `big, cat` is quoted, as the rows' file names are (it made 6 columns of 5)."""
    return "id,label" + (",file" if names else "") + "".join(f",{_field(f'prob_{c}')}" for c in classes if probs) + "\n"


def format_rows(ids: Sequence[int], labels: Sequence[int], probs: Iterable[Sequence[float]] | None,
                files: Sequence[str] | None = None) -> str:
    """CSV rows `id,label[,file][,p0,p1...]`, one per image, in the order given."""
    named = [f",{_field(f)}" for f in files] if files is not None else [""] * len(ids)
    if probs is None:
        return "".join(f"{i},{y}{f}\n" for i, y, f in zip(ids, labels, named, strict=True))
    return "".join(f"{i},{y}{f}," + ",".join(f"{p:.{PROB_DIGITS}f}" for p in row) + "\n"
                   for i, y, f, row in zip(ids, labels, named, probs, strict=True))


def _field(text: str) -> str:
    """A CSV field: quoted (quotes doubled) when it holds a comma, a quote or a line break."""
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\r\n') else text


def write_atomic(path: Path, parts: Iterable[str | Path]) -> None:
    """Write strings and the contents of files to `path` atomically (shared.atomic): a reader, or a
    failure half-way, never leaves a partial file at `path`."""
    with atomic_write(path, "w", newline="") as out:
        for part in parts:
            out.write(part if isinstance(part, str) else Path(part).read_text())


def part_path(parent_dir: Path, shard: int) -> Path:
    return Path(parent_dir) / "shards" / f"{shard}.csv"


def remove_parts(parts: Iterable[Path]) -> None:
    """Delete part files once the run's CSV and its success are recorded (the CSV kept in the run's
    folder holds the same rows: the parts doubled what a finished scoring run kept on disk), and
    their `shards/` folder when that leaves it empty. Best effort: a part left behind is only disk."""
    folders = set()
    for part in parts:
        part.unlink(missing_ok=True)
        folders.add(part.parent)
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (a file someone else put there) or already gone
            pass


def check_rows(texts: Sequence[str], files: int, ids_sha256: str) -> None:
    """The parts hold every pinned id exactly once, in order: `files` rows whose ids hash to `ids_sha256`."""
    # read as CSV: a quoted file name may hold a line break (or U+2028, which splitlines() splits at)
    ids = [_row_id(row) for text in texts for row in csv.reader(io.StringIO(text, newline="")) if row]
    if len(ids) != files:
        raise DataError(f"assembly: the shards wrote {len(ids)} rows but the folder had {files} images "
                        "at submit; retry the run")
    twice = [i for i, n in Counter(ids).items() if n > 1]
    if twice:
        raise DataError(f"assembly: id {twice[0]} appears {Counter(ids)[twice[0]]} times in the shards' "
                        "parts; retry the run")
    if ids_digest(ids) != ids_sha256:
        raise DataError("assembly: the shards' ids are not the folder's ids at submit (or not in "
                        "numeric order); retry the run")


def _row_id(row: list[str]) -> int:
    try:
        return int(row[0])
    except ValueError:
        raise DataError(f"assembly: a part holds a row that is not id,label...: {','.join(row)[:40]!r}") from None


def totals(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """n, accuracy over every labelled image, and images/s per worker (n over summed shard time)."""
    n = sum(r.get("n", 0) for r in results)
    labelled = sum(r.get("labelled", 0) for r in results)
    correct = sum(r.get("correct", 0) for r in results)
    seconds = sum(r.get("seconds", 0.0) for r in results)
    # what arithmetic ran: one name when every shard agreed (int8 may fall back shard by shard)
    ran = sorted({r["precision"] for r in results if r.get("precision")})
    fallbacks = sorted({r["int8_fallback"] for r in results if r.get("int8_fallback")})
    # the int8 check's (every shard calibrates on the same images): `orch status` says why int8 ran
    agreements = [r["int8_agreement"] for r in results if isinstance(r.get("int8_agreement"), int | float)]
    return {"n": n, "accuracy": correct / labelled if labelled else None,
            "labelled": labelled, "images_per_s": n / seconds if seconds > 0 else None,
            "precision": ",".join(ran) or None, **({"int8_fallback": fallbacks[0]} if fallbacks else {}),
            **({"int8_agreement": min(agreements)} if agreements else {})}
