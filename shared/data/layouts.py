"""The three folder layouts users have, read without torch or decoding a single image.

- folder: torchvision ImageFolder, `train/<class>/**/*.jpg`; classes are the sorted folder names, and
  a class folder's subfolders hold its images too (as in ImageFolder; hidden ones are skipped).
- flat: cats-vs-dogs, `cat.123.jpg`; the class is the name's prefix before the first dot,
  classes sorted by name (cat=0, dog=1).
- numbered: unlabelled test folders, `0.jpg`, `1.jpg`...; the id is the file stem.
A file name whose stem holds a dot is flat, one whose stem is an integer is numbered; a folder may
not mix them. Only JPEG and PNG files count; anything else (CSV files, .DS_Store) is ignored.
"""
from __future__ import annotations

import csv
import os
import random
import socket
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
# image formats a user's folder may hold that orch does not read: said at submit, not left out unsaid
OTHER_IMAGE_SUFFIXES = frozenset({".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".jp2", ".avif"})
# The val split must not depend on the training seed: every job of a study, whatever its seed,
# is then measured on the same held-out images, so seeds vary only what they should.
SPLIT_SEED = 1234


@dataclass(frozen=True)
class Listing:
    """The image files of one folder, in a fixed order, with labels when the layout has them."""

    folder: Path
    layout: str  # "folder" | "flat" | "numbered"
    files: list[Path]
    labels: list[int] | None  # index into `classes`; None for a numbered folder
    classes: list[str]
    ids: list[int]  # the stem for numbered folders; the position in `files` otherwise


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not name.startswith(".")


def _entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """(subfolders, image files) of `folder`, each sorted by name as Path sorts them.

    os.scandir's entries know whether they are files or folders without a stat per entry (the
    directory read says so), and sorting names is cheaper than sorting Paths: for a folder of
    20,000 JPEGs, a scan took 0.32 s with Path.iterdir, is_dir, is_file and sorted Paths, and
    takes 0.12 s this way (2,000: 0.025 and 0.016 s; 2-core EPYC)."""
    with os.scandir(folder) as found:
        entries = sorted(found, key=lambda e: os.path.normcase(e.name))
    subdirs = [folder / e.name for e in entries if not e.name.startswith(".") and e.is_dir()]
    images = [folder / e.name for e in entries if is_image_name(e.name) and e.is_file()]
    _refuse_dangling_links(folder, [e for e in entries if is_image_name(e.name) and not e.is_file()])
    return subdirs, images


def _refuse_dangling_links(folder: Path, not_files: list[os.DirEntry[str]]) -> None:
    """An image's name whose link leads nowhere (a folder of links into a share this host has not
    mounted): left out of the listing, its row was missing from the scored CSV without a word."""
    dangling = [e for e in not_files if e.is_symlink() and not e.is_dir()]
    if dangling:
        more = f" (and {len(dangling) - 1} more)" if len(dangling) > 1 else ""
        raise DataError(f"{folder}: {dangling[0].name} is a link to {os.readlink(dangling[0].path)}, which does not "
                        f"exist on {socket.gethostname()}{more}; restore what it links to, or remove the link")


def scan(folder: Path) -> Listing:
    """List `folder` in whichever layout it has; DataError if missing, unreadable or without images."""
    folder = Path(folder)
    try:
        return _scan(folder)
    except OSError as exc:  # a folder we may not list: permanent, retrying does not grant permission
        where = exc.filename or folder
        raise DataError(f"{where}: cannot list ({exc.strerror or type(exc).__name__})") from None


def _scan(folder: Path) -> Listing:
    if not folder.is_dir():
        # the host named: in a lab, the worker's machine may lack a path the submitting one has
        raise DataError(f"{folder}: no such folder on {socket.gethostname()}")
    subdirs, images = _entries(folder)
    if subdirs and not images:
        return _scan_class_folders(folder, subdirs)
    if not images:
        raise DataError(f"{folder}: no JPEG or PNG images found")
    _refuse_images_beside_folders(folder, images, subdirs)
    if all("." not in p.stem for p in images):
        return _numbered(folder, images)
    return _flat(folder, images)


def _refuse_images_beside_folders(folder: Path, images: list[Path], subdirs: list[Path]) -> None:
    """Images here and folders of images beside them: whichever layout is read leaves the other's
    images out (class folders beside two cat.3.jpg trained on those two; a numbered test folder with a
    batch2/ scored without it), so neither is. A folder without images (notes, outputs) is no matter."""
    holding = [d for d in subdirs if _images_below(d)]
    if holding:
        names = ", ".join(f"{d.name}/" for d in holding[:3]) + (", ..." if len(holding) > 3 else "")
        raise DataError(f"{folder}: holds folders of images ({names}) and images beside them ({images[0].name}); "
                        "move each image into its class folder, or the folders out of this one")


def unread_images_note(folder: Path) -> str | None:
    """Image files below `folder` that orch does not read, how many and one by name: those in a format it
    has no decoder for (.webp, .bmp, ...: a folder of JPEGs, PNGs and WebPs trained on 20 of its 34
    images without a word), and hidden ones (.8.jpg: skipped as .DS_Store is, and its row was missing
    from a scored CSV unsaid). macOS's ._ files are metadata, not images; hidden folders are not looked in."""
    folder = Path(folder)
    other: list[Path] = []
    hidden: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            suffix = os.path.splitext(name)[1].lower()
            if not name.startswith("."):
                other += [Path(root) / name] if suffix in OTHER_IMAGE_SUFFIXES else []
            elif not name.startswith("._") and suffix in IMAGE_SUFFIXES | OTHER_IMAGE_SUFFIXES:
                hidden.append(Path(root) / name)
    notes = []
    if other:
        kinds = ", ".join(sorted({p.suffix.lower() for p in other}))
        notes.append(f"{_count(other, 'file')} in {folder} {_are(other)} not read ({kinds}; e.g. "
                     f"{other[0].relative_to(folder).as_posix()}): orch reads JPEG and PNG; convert them to use them")
    if hidden:
        them = "them" if len(hidden) != 1 else "it"
        notes.append(f"{_count(hidden, 'hidden image file')} in {folder} {_are(hidden)} not read (e.g. "
                     f"{hidden[0].relative_to(folder).as_posix()}): names starting with '.' are skipped; rename {them} "
                     f"to use {them}")
    return "; ".join(notes) or None


def _count(paths: list[Path], noun: str) -> str:
    return f"{len(paths)} {noun}{'s' * (len(paths) != 1)}"


def _are(paths: list[Path]) -> str:
    return "are" if len(paths) != 1 else "is"


def scan_labelled(folder: Path, least: int = 2) -> Listing:
    """A training folder: a labelled layout with at least two classes (a validation folder: `least` 1,
    its classes checked against training's by `val_classes_note`)."""
    listing = scan(folder)
    if listing.labels is None:
        raise DataError(f"{listing.folder}: numbered images carry no labels; use train/<class>/*.jpg "
                        "or cat.123.jpg names")
    if len(listing.classes) < least:
        raise DataError(f"{listing.folder}: only one class ({listing.classes[0]}); need at least two")
    return listing


def val_classes_note(val: Listing, classes: list[str]) -> str | None:
    """A validation folder's classes against training's: one training lacks is refused (the model has
    no output for it; the worker found it only when the job ran), and those it lacks are said (its
    accuracy says nothing of them). A one-class validation folder read "need at least two"."""
    unknown = [c for c in val.classes if c not in classes]
    if unknown:
        raise DataError(f"--val: class {unknown[0]!r} is not one of --data's classes ({', '.join(classes)}); "
                        "a validation folder holds the training classes' images")
    missing = [c for c in classes if c not in val.classes]
    return (f"--val has no images of {', '.join(missing)}: its accuracy says nothing of "
            f"{'that class' if len(missing) == 1 else 'those classes'}") if missing else None


def check_folder(path: Path, *, labelled: bool) -> None:
    """The fast check the CLI runs at submit time: exists, holds images, two classes if labelled."""
    if labelled:
        scan_labelled(Path(path))
    else:
        scan(Path(path))


def _scan_class_folders(folder: Path, subdirs: list[Path]) -> Listing:
    files: list[Path] = []
    labels: list[int] = []
    classes = [class_name(d.name) for d in subdirs]
    for label, d in enumerate(subdirs):
        found = _images_below(d)
        if not found:
            raise DataError(f"{folder}: class folder {d.name!r} holds no JPEG or PNG images")
        files += found
        labels += [label] * len(found)
    return Listing(folder, "folder", files, labels, classes, list(range(len(files))))


def class_name(name: str) -> str:
    """A class's name in Unicode's composed form (NFC): macOS writes 'café' decomposed (NFD), so a
    validation folder copied from a Mac named a class --data did not have, though it looked the same."""
    return unicodedata.normalize("NFC", name)


def class_index(classes: Sequence[str]) -> dict[str, int]:
    """Class name (as `class_name` writes it) -> its index in `classes`, a model's: a checkpoint from
    before names were composed matches the folder's names all the same."""
    return {class_name(c): i for i, c in enumerate(classes)}


def _images_below(folder: Path, visited: set[Path] | None = None) -> list[Path]:
    """A class folder's images, its subfolders' included (`cat/2019/*.jpg` was left out without a word):
    the folder's own files, then each subfolder's, depth first by name; hidden folders are skipped
    (ImageFolder reads those too, and sorts by path string, so its order can differ). A folder reached
    again through a link is read once: its images twice would fall on both sides of the val split."""
    visited = {folder.resolve()} if visited is None else visited
    subdirs, images = _entries(folder)
    for sub in subdirs:
        real = sub.resolve()
        if real not in visited:
            visited.add(real)
            images += _images_below(sub, visited)
    return images


def _flat(folder: Path, images: list[Path]) -> Listing:
    unprefixed = [p.name for p in images if "." not in p.stem]
    if unprefixed:
        prefixed = next(p.name for p in images if "." in p.stem)
        what = "numbered files" if is_number(Path(unprefixed[0]).stem) else "files without a class prefix"
        raise DataError(f"{folder}: mixes {what} ({unprefixed[0]}) with class-prefixed names ({prefixed})")
    prefixes = [class_name(p.name.split(".", 1)[0]) for p in images]
    classes = sorted(set(prefixes))
    index = {c: i for i, c in enumerate(classes)}
    return Listing(folder, "flat", images, [index[c] for c in prefixes], classes,
                   list(range(len(images))))


def _numbered(folder: Path, images: list[Path]) -> Listing:
    ids: list[int] = []
    for p in images:
        if not is_number(p.stem):
            raise DataError(f"{folder}: {p.name} is not a numbered file name (expected 0.jpg, 1.jpg, ...)")
        ids.append(int(p.stem))
    order = sorted(range(len(images)), key=lambda i: ids[i])
    _check_unique(folder, [ids[i] for i in order], [images[i] for i in order])
    return Listing(folder, "numbered", [images[i] for i in order], None, [], [ids[i] for i in order])


def is_number(text: str) -> bool:
    """0-9 only: str.isdigit also takes '²' (which int() refuses) and '٣' (which int() reads as 3)."""
    return text.isascii() and text.isdigit()


def _check_unique(folder: Path, ids: list[int], files: list[Path]) -> None:
    for a, b, fa, fb in zip(ids, ids[1:], files, files[1:], strict=False):
        if a == b:
            raise DataError(f"{folder}: {fa.name} and {fb.name} have the same id {a}")


def list_numbered(folder: Path) -> list[tuple[int, Path]]:
    """(id, path) of a numbered folder in numeric id order."""
    listing = scan(Path(folder))
    if listing.layout != "numbered":
        bad = next(p.name for p in listing.files if "." in p.stem) if listing.layout == "flat" \
            else listing.classes[0] + "/"
        raise DataError(f"{listing.folder}: {bad} is not a numbered file name (expected 0.jpg, 1.jpg, ...)")
    return list(zip(listing.ids, listing.files, strict=True))


def split_indices(listing: Listing, fraction: float) -> tuple[list[int], list[int]]:
    """(train, val) positions in `listing`: stratified and seeded, so every class is on both sides."""
    rng = random.Random(SPLIT_SEED)
    train_idx: list[int] = []
    val_idx: list[int] = []
    labels = listing.labels or []
    for label in range(len(listing.classes)):
        members = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(members)
        n_val = min(max(1, round(len(members) * fraction)), len(members) - 1)
        val_idx += members[:n_val]
        train_idx += members[n_val:]
    if not val_idx or not train_idx:
        raise DataError(f"{listing.folder}: too few images to split off a validation fraction of {fraction} "
                        "(a class needs 2 images or more to be on both sides)")
    return sorted(train_idx), sorted(val_idx)


def unsplit_classes(listing: Listing) -> list[str]:
    """The classes `split_indices` cannot put on both sides: one image, which it trains on."""
    counts = [0] * len(listing.classes)
    for label in listing.labels or []:
        counts[label] += 1
    return [name for name, n in zip(listing.classes, counts, strict=True) if n < 2]


def read_labels_csv(path: Path) -> dict[int, int]:
    """An `id,label` CSV (the header `id,label` optional) as {id: class index}. A header in another
    order, a third column, or one id given two labels is refused: each read as data would score
    against the wrong truth without a word."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            reader = csv.reader(fh)  # each row with its line in the file, as an editor numbers it (blank lines count)
            numbered = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
    except UnicodeDecodeError:  # Excel's "Unicode text" is UTF-16: the codec's byte offsets told nothing
        raise DataError(f"--labels: {path}: not UTF-8 text; save it as CSV UTF-8") from None
    except OSError as exc:
        raise DataError(f"--labels: {path}: cannot read labels ({exc.__class__.__name__}: {exc})") from None
    rows = [r for _, r in numbered]
    separator = next((sep for sep in ("\t", ";") if rows and len(rows[0]) == 1 and sep in rows[0][0]), None)
    if separator is not None:  # it read 'the header is 0\t0'
        raise DataError(f"--labels: {path}: its columns are separated by {separator!r}; expected a comma-separated "
                        "id,label CSV")
    if rows and not is_number(rows[0][0].strip().lstrip("-")):
        header = [c.strip().lower() for c in rows[0]]
        if header != ["id", "label"]:
            raise DataError(f"--labels: {path}: the header is {','.join(rows[0])!r}; expected id,label "
                            "(or no header)")
        numbered = numbered[1:]
    labels: dict[int, int] = {}
    first_line: dict[int, int] = {}
    for line, row in numbered:
        ident, label = _label_row(path, line, row)
        if labels.get(ident, label) != label:
            raise DataError(f"--labels: {path}: id {ident} has label {labels[ident]} on line {first_line[ident]} "
                            f"and {label} on line {line}")
        labels[ident] = label
        first_line.setdefault(ident, line)
    if not labels:
        raise DataError(f"--labels: {path}: no id,label rows")
    return labels


def _label_row(path: Path, line: int, row: list[str]) -> tuple[int, int]:
    try:
        ident, label = (int(row[0]), int(row[1])) if len(row) == 2 else (-1, -1)
    except ValueError:
        ident = label = -1
    if ident < 0 or label < 0:
        raise DataError(f"--labels: {path}: bad line {line} {','.join(row)!r}; expected id,label as two "
                        "non-negative integers (a label is its class's index in the sorted class names: "
                        "cat,dog are 0,1)")
    return ident, label
