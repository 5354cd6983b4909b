"""`orch init [FOLDER]`: look at a data folder and write its orch.toml (the project's defaults).

Thin: detect the layout with shared.data's scanners (no torch), read a few image headers with PIL
for the image size, write the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from shared.errors import DataError

# the folder names each split goes by, in the order they are tried, in any case (Training/ was read as a
# class of a 3-class set beside Validation/ and Test/); test1, training_set: Kaggle's cats-vs-dogs
SPLITS: dict[str, tuple[str, ...]] = {
    "data": ("train", "training", "train_set", "training_set"),
    "val": ("val", "valid", "validation", "val_set", "validation_set", "dev"),
    "test": ("test", "testing", "test1", "test_set", "testing_set")}
MAX_IMAGE_SIZE = 224  # photos larger than this train at the ResNet paper's 224
MIN_IMAGE_SIZE = 32  # the spec's minimum
SAMPLE = 24  # image headers read to decide the size
LAYOUTS = {"folder": "ImageFolder (<class>/*.jpg)", "flat": "flat (cat.1.jpg)", "numbered": "numbered (0.jpg)"}


@dataclass(frozen=True)
class Split:
    key: str  # data, val or test
    folder: Path
    summary: str  # what was found, for the file's comment


TEST_LABELS = "test_labels.csv"  # what `orch data synth` writes beside test/


@click.command("init")
@click.argument("folder", default=".")
@click.option("--force", is_flag=True, help="Replace an existing orch.toml.")
def init(folder: str, force: bool) -> None:
    """Write FOLDER/orch.toml from what the data folder holds: the train, val and test folders,
    their layout and the image size. Commands run in FOLDER or below take their defaults from it;
    flags still win.

    \b
    Examples:
      orch data synth data && cd data && orch init     # train/, val/, test/ at 64 px
      orch init ~/datasets/cats-vs-dogs                # then, in that folder:
      orch submit ablation --norm bn,ln --groups 1,8,32   # resnet50 with --data/--val from orch.toml
    """
    from orchestrator.paths import existing_path
    from orchestrator.project import PROJECT_FILE

    # named by FOLDER, as every error of a path is ("/x/nope: no such folder" named none; '' read ".")
    root = Path(existing_path("FOLDER", folder, folder=True) or ".")
    target = root / PROJECT_FILE
    if target.exists() and not force:
        raise click.BadParameter(f"{target} exists; pass --force to replace it", param_hint="FOLDER")
    splits = detect_splits(root)
    used = {str(split.folder) for split in splits}
    unread = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in used)
    if unread and "." not in used:  # FOLDER itself as the train set: its subfolders are its classes
        click.echo(f"orch: note: not read: {', '.join(d + '/' for d in unread)} (each split is the first folder found "
                   f"of {'; '.join(', '.join(names) for names in SPLITS.values())}); edit orch.toml to use another",
                   err=True)
    size = image_size(root / splits[0].folder)
    labels = TEST_LABELS if any(s.key == "test" for s in splits) and (root / TEST_LABELS).is_file() else None
    target.write_text(project_text(splits, size, labels))
    click.echo(target.read_text(), nl=False)
    click.echo(f"orch: wrote {target}", err=True)


def detect_splits(folder: Path) -> list[Split]:
    """The train (first), val and test folders: named subfolders, or FOLDER itself as the train set."""
    from shared.data import scan, scan_labelled

    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    found = []
    by_name = {d.name.lower(): d for d in sorted(folder.iterdir(), reverse=True) if d.is_dir()}  # train/ before Train/
    for key, names in SPLITS.items():
        sub = next((by_name[name] for name in names if name in by_name), None)
        if sub is not None:
            listing = scan(sub) if key == "test" else scan_labelled(sub)
            found.append(Split(key, sub.relative_to(folder), _summary(listing)))
            _say_unread(sub)
    if found and found[0].key != "data":
        raise DataError(f"{folder}: has {found[0].folder}/ but no train/ folder of labelled images")
    if not found:  # the folder itself holds the labelled images, unless a data folder is below it
        below = sorted(d.name for d in folder.iterdir() if d.is_dir() and any(
            sub.is_dir() and sub.name.lower() in SPLITS["data"] for sub in d.iterdir()))
        if below:  # a project folder holding data/: its "class" would be data
            raise DataError(f"{folder}: no train/ folder here, but {below[0]}/ has one: orch init {folder / below[0]}")
        listing = scan_labelled(folder)
        found.append(Split("data", Path("."), _summary(listing)))
        _say_unread(folder)
        class_dirs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        nested = [d.name for d in class_dirs if listing.layout == "folder" and not any(p.is_file() for p in d.iterdir())]
        if nested and len(nested) == len(listing.classes):  # splits under names not known, read as classes
            click.echo(f"orch: note: the {len(nested)} classes ({', '.join(c + '/' for c in nested[:3])}) hold folders, not "
                       f"images: if they are the splits, name them {', '.join(names[0] for names in SPLITS.values())} "
                       "(or edit data/val/test in orch.toml)", err=True)
    return found


def _say_unread(folder: Path) -> None:
    from shared.data import unread_images_note

    note = unread_images_note(folder)
    if note:
        click.echo(f"orch: note: {note}", err=True)


def _summary(listing: Any) -> str:
    classes = f", {len(listing.classes)} classes" if listing.classes else ""
    return f"{LAYOUTS[listing.layout]}{classes}, {len(listing.files)} images"


def image_size(train: Path) -> int:
    """The median short side of a sample of the training images, within [32, 224]."""
    from shared.data import scan

    return image_size_of(scan(train).files)


def image_size_of(files: list[Path]) -> int:
    """image_size over a folder's listed files (their headers only)."""
    import statistics

    from PIL import Image

    sample = files[:: max(1, len(files) // SAMPLE)][:SAMPLE]
    sides = []
    for path in sample:
        try:
            with Image.open(path) as image:  # reads the header only
                sides.append(min(image.size))
        except OSError as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
    return max(MIN_IMAGE_SIZE, min(MAX_IMAGE_SIZE, int(statistics.median(sides))))


def project_text(splits: list[Split], size: int, labels: str | None = None) -> str:
    from orchestrator.project import render_project

    entries: list[tuple[str, Any, str]] = [(s.key, str(s.folder), s.summary) for s in splits]
    if labels is not None:  # `orch data synth` writes it beside test/: scoring then records a test accuracy
        entries.append(("test_labels", labels, "id,label of the test images: submit score records the test accuracy"))
    entries.append(("image_size", size, "the median short side of the training images, at most 224"))
    entries.append(("# model", "resnet18", "unset: resnet18, or resnet50 when --groups asks for more than 1"))
    header = ("orch project file, written by `orch init`: the defaults of `orch submit` run in this folder\n"
              "or below (flags win). Keys are `orch submit train` options; paths are relative to this file.")
    return render_project(entries, header)
