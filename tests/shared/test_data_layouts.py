"""The three layouts, the submit-time folder check, label CSVs and the seeded val split."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.data import check_folder, list_numbered, read_labels_csv, scan, scan_labelled, split_indices
from shared.errors import DataError
from tests.shared.data_helpers import write_image


def test_image_folder_layout_sorted_classes_jpeg_and_png(tmp_path: Path) -> None:
    for name in ("dog/b.png", "dog/a.jpg", "cat/x.JPEG", "bird/1.jpg"):
        write_image(tmp_path / name)
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden").mkdir()
    listing = scan_labelled(tmp_path)
    assert listing.layout == "folder"
    assert listing.classes == ["bird", "cat", "dog"]
    assert [f.relative_to(tmp_path).as_posix() for f in listing.files] == ["bird/1.jpg", "cat/x.JPEG", "dog/a.jpg", "dog/b.png"]
    assert listing.labels == [0, 1, 2, 2]
    assert listing.ids == [0, 1, 2, 3]


def test_a_class_folders_subfolders_hold_its_images_too(tmp_path: Path) -> None:
    """`cat/batch2/*.jpg` was dropped without a word (20 of 32 images), and a class whose images are
    all in `dog/2019/` was refused as holding none: torchvision's ImageFolder reads both."""
    for name in ("cat/a.jpg", "cat/batch2/b.jpg", "cat/batch2/deeper/c.jpg", "cat/.thumbs/t.jpg", "dog/2019/d.jpg"):
        write_image(tmp_path / name)
    (tmp_path / "dog" / "2019" / "loop").symlink_to(tmp_path / "dog")  # a link back up: read once, no recursion
    (tmp_path / "cat" / "again").symlink_to(tmp_path / "cat" / "batch2" / "deeper")  # the same folder twice: once
    listing = scan_labelled(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in listing.files] == [
        "cat/a.jpg", "cat/again/c.jpg", "cat/batch2/b.jpg", "dog/2019/d.jpg"]  # c.jpg once, by the first path by name;
    assert listing.labels == [0, 0, 0, 1] and listing.classes == ["cat", "dog"]  # hidden folders left out


@pytest.mark.parametrize(("names", "beside"), [
    # a stray cover.jpg beside cat/ and dog/ read "cover.jpg is not a numbered file name"
    (("cat/a.jpg", "dog/b.jpg", "cover.jpg"), "cover.jpg"),
    # a stray 0.jpg read "numbered images carry no labels", naming no file
    (("cat/a.jpg", "dog/b.jpg", "0.jpg"), "0.jpg"),
    # two cat.3.jpg beside the class folders: trained as a flat folder of 2 images, the folders' left out
    (("cat/a.jpg", "dog/b.jpg", "cat.3.jpg", "dog.3.png"), "cat.3.jpg"),
])
def test_images_beside_folders_of_images_are_refused_by_name(tmp_path: Path, names: tuple[str, ...], beside: str) -> None:
    for name in names:
        write_image(tmp_path / name)
    with pytest.raises(DataError, match=rf"holds folders of images \(cat/, dog/\) and images beside them \({beside}\)"):
        scan(tmp_path)


def test_a_numbered_folder_with_a_folder_of_images_is_refused_not_scored_in_part(tmp_path: Path) -> None:
    """A test folder of 0..9.jpg and batch2/10.jpg, 11.jpg scored 10 rows of 12 without a word; a folder
    without images beside them (notes) is no matter."""
    for name in [f"{i}.jpg" for i in range(3)] + ["batch2/10.jpg"]:
        write_image(tmp_path / name)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds folders of images \(batch2/\) and images beside them \(0.jpg\)"):
        list_numbered(tmp_path)
    (tmp_path / "batch2" / "10.jpg").unlink()
    assert [i for i, _ in list_numbered(tmp_path)] == [0, 1, 2]


def test_flat_layout_label_is_prefix_before_first_dot(tmp_path: Path) -> None:
    for name in ("dog.9.jpg", "cat.123.jpg", "cat.1.extra.png", "dog.10.png"):
        write_image(tmp_path / name)
    (tmp_path / "labels.csv").write_text("not an image")
    listing = scan_labelled(tmp_path)
    assert listing.layout == "flat"
    assert listing.classes == ["cat", "dog"]  # sorted by name: cat=0, dog=1
    by_name = {f.name: listing.labels[i] for i, f in enumerate(listing.files)}  # type: ignore[index]
    assert by_name == {"cat.1.extra.png": 0, "cat.123.jpg": 0, "dog.10.png": 1, "dog.9.jpg": 1}


def test_numbered_layout_in_numeric_order(tmp_path: Path) -> None:
    for i in (10, 2, 0, 1):
        write_image(tmp_path / f"{i}.{'png' if i == 2 else 'jpg'}")
    items = list_numbered(tmp_path)
    assert [i for i, _ in items] == [0, 1, 2, 10]
    assert items[2][1].name == "2.png"
    listing = scan(tmp_path)
    assert listing.layout == "numbered" and listing.labels is None
    check_folder(tmp_path, labelled=False)


@pytest.mark.parametrize("names, message", [
    (["0.jpg", "1.jpg", "abc.jpg"], "abc.jpg is not a numbered file name"),
    (["1.jpg", "1.png"], "same id 1"),
    (["1.jpg", "cat.2.jpg"], "mixes numbered files"),
    (["IMG_0001.jpg", "cat.2.jpg"], r"mixes files without a class prefix \(IMG_0001.jpg\)"),  # not "numbered"
])
def test_numbered_folder_errors_name_the_file(tmp_path: Path, names: list[str], message: str) -> None:
    for name in names:
        write_image(tmp_path / name)
    with pytest.raises(DataError, match=message) as err:
        list_numbered(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("setup, message", [
    ("missing", "no such folder"),
    ("empty", "no JPEG or PNG images"),
    ("one_class", "only one class"),
    ("one_class_folder", "only one class"),
    ("numbered", "carry no labels"),
    ("empty_class_folder", "holds no JPEG or PNG"),
])
def test_check_folder_errors_are_one_line_naming_the_folder(tmp_path: Path, setup: str, message: str) -> None:
    folder = tmp_path / "train"
    if setup != "missing":
        folder.mkdir()
    if setup == "empty":
        (folder / "readme.txt").write_text("no images here")
    files = {"one_class": ["cat.1.jpg", "cat.2.jpg"], "one_class_folder": ["cat/1.jpg"],
             "numbered": ["0.jpg", "1.jpg"], "empty_class_folder": ["cat/1.jpg"]}.get(setup, [])
    for name in files:
        write_image(folder / name)
    if setup == "empty_class_folder":
        (folder / "dog").mkdir()
    with pytest.raises(DataError, match=message) as err:
        check_folder(folder, labelled=True)
    assert str(err.value).startswith(str(folder)) and "\n" not in str(err.value)


def test_read_labels_csv_with_and_without_header(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,label\n0,1\n1,0\n\n10,1\n")
    (tmp_path / "b.csv").write_text("3,1\n4,0\n")
    assert read_labels_csv(tmp_path / "a.csv") == {0: 1, 1: 0, 10: 1}
    assert read_labels_csv(tmp_path / "b.csv") == {3: 1, 4: 0}
    (tmp_path / "excel.csv").write_bytes("id,label\r\n0,1\r\n".encode("utf-8-sig"))  # Excel's "CSV UTF-8"
    assert read_labels_csv(tmp_path / "excel.csv") == {0: 1}
    (tmp_path / "utf16.csv").write_bytes("id,label\r\n0,1\r\n".encode("utf-16"))  # Excel's "Unicode text"
    with pytest.raises(DataError, match=r"^--labels: .*utf16.csv: not UTF-8 text; save it as CSV UTF-8$"):
        read_labels_csv(tmp_path / "utf16.csv")  # it said "(UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff..."


@pytest.mark.parametrize("text, message", [("id,label\n0,cat\n", "bad line 2"), ("id,label\n", "no id,label rows"),
                                           ("0\n", "bad line 1"), ("id,label\n0,1\n1,-2\n", "bad line 3"),
                                           ("0\t1\n1\t0\n", r"separated by '\\t'; expected a comma-separated"),
                                           ("id;label\n0;1\n", "separated by ';'"),
                                           # a blank line counts, as an editor numbers lines (it said row 2)
                                           ("id,label\n\n0,1\n1,x\n", "bad line 4 '1,x'.*sorted class names")])
def test_read_labels_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "l.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_labels_csv(tmp_path / "l.csv")
    with pytest.raises(DataError, match="cannot read labels"):
        read_labels_csv(tmp_path / "missing.csv")


def test_val_split_is_stratified_seeded_and_disjoint(tmp_path: Path) -> None:
    for i in range(30):
        write_image(tmp_path / f"cat.{i}.jpg", size=(4, 4))
    for i in range(10):
        write_image(tmp_path / f"dog.{i}.jpg", size=(4, 4))
    listing = scan_labelled(tmp_path)
    train, val = split_indices(listing, 0.2)
    assert split_indices(listing, 0.2) == (train, val)
    assert not set(train) & set(val) and len(train) + len(val) == 40
    assert sorted(listing.labels[i] for i in val) == [0] * 6 + [1] * 2  # type: ignore[index]


def test_shared_data_imports_no_torch() -> None:
    code = "import sys, shared.data; shared.data.check_folder; print('torch' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("name", ["².jpg", "٣.jpg", "1².png"])
def test_a_non_ascii_digit_name_in_a_numbered_folder_is_a_clear_error(tmp_path: Path, name: str) -> None:
    """str.isdigit() is true for '²' (int() refuses it: a traceback) and '٣' (int() reads 3)."""
    for i in range(3):
        write_image(tmp_path / f"{i}.jpg")
    write_image(tmp_path / name)
    with pytest.raises(DataError, match=f"{name} is not a numbered file name") as err:
        scan(tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("link", ["5.jpg", "cat/5.jpg"])
def test_a_link_to_an_image_that_is_gone_is_refused_by_name(tmp_path: Path, link: str) -> None:
    """A dangling link was left out of the listing: its id was missing from the scored CSV without a
    word. A link that leads to an image is read, and one to a folder is a folder."""
    names = ["0.jpg", "1.jpg"] if "/" not in link else ["cat/0.jpg", "dog/1.jpg"]
    for name in names:
        write_image(tmp_path / name)
    (tmp_path / link).parent.joinpath("4.jpg").symlink_to(tmp_path / names[0])
    (tmp_path / link).symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(DataError, match=f"5.jpg is a link to {tmp_path / 'gone.jpg'}, which does not exist") as err:
        scan(tmp_path)
    assert str(err.value).startswith(str(tmp_path)) and "\n" not in str(err.value)
    (tmp_path / link).unlink()
    assert len(scan(tmp_path).files) == 3


def test_a_folder_we_may_not_list_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A permission error on the data is permanent: a DataError with one line, not an OSError to retry.

    (Tests may run as root, for whom chmod 000 denies nothing: the refusal is simulated.)
    """
    write_image(tmp_path / "0.jpg")
    real = os.scandir

    def refuse(path):  # type: ignore[no-untyped-def]
        if Path(path) == tmp_path:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(DataError, match="cannot list \\(Permission denied\\)") as err:
        scan(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_a_validation_folder_is_checked_against_the_training_classes(tmp_path: Path) -> None:
    """A one-class validation folder read "need at least two"; one with a class training lacks was
    queued and failed in the worker."""
    from shared.data import val_classes_note

    for name in ("cat", "cow"):
        (tmp_path / "val" / name).mkdir(parents=True)
        (tmp_path / "val" / name / "1.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "cats" / "cat").mkdir(parents=True)
    (tmp_path / "cats" / "cat" / "1.jpg").write_bytes(b"\xff\xd8")
    only_cats = scan_labelled(tmp_path / "cats", least=1)
    assert val_classes_note(only_cats, ["cat", "dog"]) == ("--val has no images of dog: its accuracy says nothing "
                                                           "of that class")
    assert val_classes_note(only_cats, ["cat"]) is None
    with pytest.raises(DataError, match=r"^--val: class 'cow' is not one of --data's classes \(cat, dog\)"):
        val_classes_note(scan_labelled(tmp_path / "val"), ["cat", "dog"])


def test_class_names_in_either_unicode_form_are_one_class(tmp_path: Path) -> None:
    """macOS writes 'café' decomposed (NFD): a validation folder copied from a Mac was refused with
    "class 'café' is not one of --data's classes (café, dog)"."""
    import unicodedata

    from shared.data import val_classes_note
    from shared.data.images import remap_labels

    composed, decomposed = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    for name in (f"train/{composed}/1.jpg", "train/dog/2.jpg", f"val/{decomposed}/3.jpg", "val/dog/4.jpg",
                 f"flat/{decomposed}.5.jpg", "flat/dog.6.jpg"):
        write_image(tmp_path / name)
    train, val, flat = (scan_labelled(tmp_path / split) for split in ("train", "val", "flat"))
    assert train.classes == val.classes == flat.classes == [composed, "dog"]
    assert val_classes_note(val, train.classes) is None
    assert remap_labels(val, [decomposed, "dog"]) == [0, 1]  # a checkpoint that kept the decomposed name
