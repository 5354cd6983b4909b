"""What a scoring run reads, checked and pinned: the same checks in the CLI (at submit) and in a shard.

`pin` records the checkpoint's sha256 and a digest of the folder's (id, name, size) list in the
spec at submit; `verify_folder` and `verify_checkpoint` refuse, in a shard, inputs that are not
those any more, so one CSV never mixes two folders or two models.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from shared.data.layouts import Listing, class_index
from shared.errors import CheckpointError, DataError
from shared.scoring.csv_parts import ids_digest, listing_items
from shared.spec import ScoreInputs, ScoreSpec

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise CheckpointError(f"--checkpoint: cannot read {path} ({exc.strerror or type(exc).__name__})") from None
    return digest.hexdigest()


def folder_digest(listing: Listing) -> tuple[int, str, str]:
    """(image count, sha256 over (id, relative name, size) in id order, sha256 of the ids)."""
    digest = hashlib.sha256()
    items = listing_items(listing)
    try:
        for ident, path in items:
            digest.update(f"{ident}\t{path.relative_to(listing.folder).as_posix()}\t{path.stat().st_size}\n".encode())
    except OSError as exc:
        raise DataError(f"--data: cannot read {exc.filename} ({exc.strerror or type(exc).__name__})") from None
    return len(items), digest.hexdigest(), ids_digest(i for i, _ in items)


def pin(spec: ScoreSpec, listing: Listing) -> ScoreSpec:
    """`spec` with its inputs pinned: the checkpoint's bytes and the folder's file list as they are now."""
    count, files_sha256, ids_sha256 = folder_digest(listing)
    inputs = ScoreInputs(checkpoint_sha256=file_sha256(Path(spec.checkpoint)), files=count,
                         files_sha256=files_sha256, ids_sha256=ids_sha256)
    return spec.model_copy(update={"inputs": inputs})


def pinned(spec: ScoreSpec, job_id: int) -> ScoreInputs:
    if spec.inputs is None:
        raise DataError(f"score job {job_id} was submitted before orch pinned scoring inputs; submit it again")
    return spec.inputs


def verify_folder(spec: ScoreSpec, listing: Listing, inputs: ScoreInputs) -> None:
    """DataError (one line) if the folder is not the one pinned at submit."""
    count, files_sha256, _ = folder_digest(listing)
    if count != inputs.files:
        raise DataError(f"--data: {spec.data} holds {count} images now but {inputs.files} when the run was "
                        "submitted; the run is refused, submit it again")
    if files_sha256 != inputs.files_sha256:
        raise DataError(f"--data: {spec.data} changed since the run was submitted (file names or sizes "
                        "differ); the run is refused, submit it again")


def verify_checkpoint(spec: ScoreSpec, inputs: ScoreInputs) -> None:
    """CheckpointError (one line) if the checkpoint file is not the one pinned at submit."""
    found = file_sha256(Path(spec.checkpoint))
    if found != inputs.checkpoint_sha256:
        raise CheckpointError(f"--checkpoint: {spec.checkpoint} changed since the run was submitted "
                              f"(sha256 {found[:12]}, pinned {inputs.checkpoint_sha256[:12]}); "
                              "the run is refused, submit it again")


def trained_on(job_spec: dict[str, object], folder: str) -> str | None:
    """'training' or 'validation' when `folder` is the training job's (by its spec), else None: an
    accuracy scored there is no test accuracy."""
    for field, role in (("data", "training"), ("val", "validation")):
        value = job_spec.get(field)
        if isinstance(value, str) and Path(value).resolve() == Path(folder).resolve():
            return role
    return None


def check_shards(shards: int, listing: Listing) -> None:
    if shards > len(listing.files):
        raise DataError(f"--shards: {shards} is more than the {len(listing.files)} images in {listing.folder}; "
                        f"use 1 to {len(listing.files)}")


def check_label_classes(labels: dict[int, int], classes: Sequence[str]) -> None:
    """An id,label CSV must use the checkpoint's class indices, 0..N-1 (a test set may hold only some)."""
    ident, top = max(labels.items(), key=lambda item: item[1])
    if top >= len(classes):
        raise DataError(f"--labels: id {ident} has class index {top}, but the checkpoint has {len(classes)} "
                        f"classes (0..{len(classes) - 1}: {', '.join(classes)}); score with a checkpoint "
                        "trained on the same classes")


def check_folder_classes(listing: Listing, classes: Sequence[str]) -> str | None:
    """A labelled folder's class names must be among the checkpoint's: refused where one is not; a
    note where the folder holds only some of them (a folder of cats alone was refused, though
    scoring the cats is a fair question: the accuracy is then over that class only)."""
    if listing.labels is None:
        return None
    unknown = [c for c in listing.classes if c not in class_index(classes)]
    if unknown:
        raise DataError(f"--data: the folder's classes ({', '.join(listing.classes)}) are not the checkpoint's "
                        f"({', '.join(classes)}): {', '.join(unknown)} is not one of them; score with a checkpoint "
                        "trained on these classes")
    if len(set(listing.classes)) < len(classes):
        return (f"--data: the folder holds {len(set(listing.classes))} of the checkpoint's {len(classes)} classes "
                f"({', '.join(listing.classes)}): its accuracy is over those only")
    return None


def check_labels_agree(labels: dict[int, int], listing: Listing, classes: Sequence[str]) -> None:
    """A labelled folder (class folders, cat.1.jpg names) scored with --labels: refused where the CSV
    contradicts the folder's own labels. A CSV of another folder scored 59% where the images' names said
    70%, with a note only, and became the job's test accuracy."""
    if listing.labels is None:
        return
    index = class_index(classes)
    own = {i: index.get(listing.classes[y]) for i, y in zip(listing.ids, listing.labels, strict=True)}
    differ = [i for i in listing.ids if i in labels and own[i] is not None and labels[i] != own[i]]
    if differ:
        first = differ[0]
        file = listing.files[listing.ids.index(first)].relative_to(listing.folder).as_posix()
        said = listing.classes[listing.labels[listing.ids.index(first)]]
        compared = sum(i in labels for i in listing.ids)
        raise DataError(f"--labels: contradicts the folder's own labels on {len(differ)} of {compared} images (e.g. "
                        f"id {first}, {file}: the folder says {said} ({own[first]}), the CSV {labels[first]}); drop "
                        "--labels to score against the folder's labels, or score a numbered folder")


def check_labels_cover(labels: dict[int, int], listing: Listing) -> str | None:
    """Refuse labels that name none of the folder's images, or all of them shifted by one (a CSV
    numbered from 1 for a folder numbered from 0 scored 50% against the wrong truth without a word);
    a note (None: every image labelled, every label an image) where some do not match."""
    ids, named = set(listing.ids), set(labels)
    for shift in (1, -1):
        if len(ids) > 1 and {i + shift for i in ids} == named:
            raise DataError(f"--labels: its ids are the folder's shifted by {shift:+d} ({min(named)}..{max(named)} "
                            f"against {min(ids)}..{max(ids)} in {listing.folder}): an id is the image's file name "
                            "number (or its position in a labelled folder's sorted listing); renumber the CSV")
    if not ids & named:
        raise DataError(f"--labels: none of the {len(listing.ids)} ids in {listing.folder} has a label")
    unlabelled, extra = sorted(ids - named), sorted(named - ids)
    said = [f"{len(unlabelled)} of the {len(ids)} images {'has' if len(unlabelled) == 1 else 'have'} no label (e.g. id {unlabelled[0]}): the accuracy "
            f"is over the other {len(ids) - len(unlabelled)}"] if unlabelled else []
    said += [f"{len(extra)} label ids name no image in the folder (e.g. id {extra[0]}): left out"] if extra else []
    return f"--labels: {'; '.join(said)}" if said else None
