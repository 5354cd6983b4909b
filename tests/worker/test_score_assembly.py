"""Scoring without a model: shard slices, CSV rows, atomic assembly, the parent's outcome, the checks."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shared.data.layouts import Listing
from shared.errors import DataError
from shared.scoring.csv_parts import count_correct, format_rows, header_line, shard_slice, totals, write_atomic
from shared.scoring.inputs import check_folder_classes, check_label_classes, check_labels_cover, check_shards
from shared.scoring.protocol import ShardState, assemble, verdict


@pytest.mark.parametrize("n,shards", [(0, 1), (1, 1), (10, 1), (10, 3), (7, 7), (3, 5), (401, 4)])
def test_shards_are_contiguous_balanced_and_concatenate_to_the_whole(n: int, shards: int) -> None:
    items = list(range(n))
    slices = [shard_slice(items, shards, i) for i in range(shards)]
    assert sum(slices, []) == items
    sizes = [len(s) for s in slices]
    assert max(sizes) - min(sizes) <= 1


def test_shard_index_out_of_range() -> None:
    with pytest.raises(ValueError):
        shard_slice([1, 2], 2, 2)


def test_rows_header_and_probabilities() -> None:
    assert format_rows([0, 2, 10], [1, 0, 1], None) == "0,1\n2,0\n10,1\n"
    assert format_rows([3], [0], [[0.75, 0.25]]) == "3,0,0.750000,0.250000\n"
    assert header_line(["cat", "dog"], probs=False) == "id,label\n"
    assert header_line(["cat", "dog"], probs=True) == "id,label,prob_cat,prob_dog\n"


def test_a_file_column_is_quoted_where_the_name_needs_it() -> None:
    import csv
    import io

    text = format_rows([0, 1], [1, 0], [[0.25, 0.75], [0.5, 0.5]], ["cat/1.jpg", 'odd, "name".jpg'])
    assert list(csv.reader(io.StringIO(text))) == [["0", "1", "cat/1.jpg", "0.250000", "0.750000"],
                                                   ["1", "0", 'odd, "name".jpg', "0.500000", "0.500000"]]
    assert header_line(["cat", "dog"], probs=True, names=True) == "id,label,file,prob_cat,prob_dog\n"
    odd = ["big, cat", 'dog "x"']  # class folders so named: the header had 6 fields over rows of 5
    header = header_line(odd, probs=True, names=True)
    assert next(csv.reader(io.StringIO(header))) == ["id", "label", "file", "prob_big, cat", 'prob_dog "x"']


def test_assembly_reads_parts_as_csv_so_a_file_name_may_hold_a_line_break() -> None:
    from shared.scoring.csv_parts import check_rows, ids_digest

    text = format_rows([0, 1], [1, 0], None, ["a\u2028b.jpg", "new\nline.jpg"])  # it read "a row that is not id,label"
    check_rows([text], 2, ids_digest([0, 1]))


def test_count_correct_only_over_labelled_ids() -> None:
    assert count_correct([0, 1, 2, 3], [1, 1, 0, 0], {0: 1, 1: 0, 3: 0}) == (2, 3)
    assert count_correct([0], [1], None) == (0, 0)


def done(job_id: int, shard: int, part: Path, n: int, correct: int = 0, labelled: int = 0) -> ShardState:
    return ShardState(job_id, shard, "running", {"part": str(part), "n": n, "correct": correct,
                                                 "labelled": labelled, "seconds": 1.0})


def test_assemble_concatenates_parts_in_shard_order_with_totals(tmp_path: Path) -> None:
    run = tmp_path / "artifacts" / "jobs" / "4"  # part_path's layout: the run's folder, then shards/
    (run / "shards").mkdir(parents=True)
    a, b = run / "shards" / "0.csv", run / "shards" / "1.csv"
    a.write_text("0,1\n1,0\n")
    b.write_text("2,1\n")
    out = tmp_path / "out" / "preds.csv"
    result = assemble(out, [done(6, 1, b, 1, 1, 1), done(5, 0, a, 2, 1, 2)], header="id,label\n")
    assert out.read_text() == "id,label\n0,1\n1,0\n2,1\n"
    assert result == {"n": 3, "accuracy": 2 / 3, "labelled": 3, "images_per_s": 1.5, "precision": None,
                      "kept": str(run / "preds.csv")}
    assert (run / "preds.csv").read_text() == out.read_text()  # the copy another host can reach
    assert not [p for p in out.parent.iterdir() if p.name != "preds.csv"]  # no temp file left


def test_wait_puts_the_csv_on_the_submitting_host(tmp_path: Path) -> None:
    """The assembling worker writes --out on its own machine: on another host the CLI said "wrote"
    of a file that was not there. The run's copy in the shared ORCH_ARTIFACTS is copied over."""
    from orchestrator.commands.score import deliver_here

    kept, out = tmp_path / "artifacts" / "preds.csv", tmp_path / "here" / "preds.csv"
    kept.parent.mkdir()
    kept.write_text("0,1\n")
    result = {"out": str(out), "kept": str(kept)}
    assert deliver_here(result, "w@hostA") == f" (copied from {kept}: w@hostA wrote it on its machine)"
    assert out.read_text() == "0,1\n"
    assert deliver_here(result, "w@hostA") == ""  # the same CSV: nothing to say
    out.write_text("an older run's\n")
    assert deliver_here(result, "w@hostA").startswith(" (copied") and out.read_text() == "0,1\n"
    kept.unlink()
    out.unlink()
    assert deliver_here(result, "w@hostA") == (f" on the worker's machine (w@hostA), not this one: ORCH_ARTIFACTS "
                                               f"({kept.parent}) is not shared with this host")


def test_atomic_write_leaves_nothing_when_it_fails(tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    with pytest.raises(FileNotFoundError):
        write_atomic(out, ["id,label\n", "0,1\n", tmp_path / "missing-part.csv"])
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_previous_file_when_it_fails(tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    out.write_text("old\n")
    with pytest.raises(FileNotFoundError):
        write_atomic(out, ["0,1\n", tmp_path / "missing-part.csv"])
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["preds.csv"]


def test_assemble_refuses_missing_parts_without_writing(tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    with pytest.raises(DataError, match="missing"):
        assemble(out, [done(1, 0, tmp_path / "gone.csv", 1)], header=None)
    assert not out.exists()


def test_verdict() -> None:
    part = Path("/p.csv")
    queued = ShardState(2, 1, "queued", None)
    failed = ShardState(3, 2, "failed", {}, "DataError: corrupt")
    assert verdict([done(1, 0, part, 1), done(2, 1, part, 1)]) == ("complete", None)
    assert verdict([done(1, 0, part, 1), queued]) == ("pending", None)
    assert verdict([done(1, 0, part, 1), queued, failed]) == ("failed", "shard 2 (job 3): DataError: corrupt")
    assert verdict([]) == ("pending", None)


def test_totals_without_labels_or_time() -> None:
    assert totals([{"n": 4, "seconds": 0.0}]) == {"n": 4, "accuracy": None, "labelled": 0, "images_per_s": None,
                                                  "precision": None}


def test_totals_name_the_precision_that_ran_and_any_int8_fallback() -> None:
    int8 = {"n": 2, "seconds": 1.0, "precision": "int8", "int8_fallback": None}
    assert totals([int8, int8])["precision"] == "int8" and "int8_fallback" not in totals([int8, int8])
    fell = {"n": 2, "seconds": 1.0, "precision": "bf16", "int8_fallback": "int8 agreed with fp32 on 90.0%"}
    mixed = totals([int8, fell])
    assert mixed["precision"] == "bf16,int8" and mixed["int8_fallback"] == "int8 agreed with fp32 on 90.0%"
    checked = {**int8, "int8_agreement": 1.0}  # the run keeps its check's agreement, for `orch status`
    assert totals([checked, checked])["int8_agreement"] == 1.0 and "int8_agreement" not in totals([int8])


def listing(ids: list[int], classes: list[str] | None = None) -> Listing:
    files = [Path(f"/d/{i}.jpg") for i in ids]
    labels = [0] * len(ids) if classes else None
    return Listing(Path("/d"), "folder" if classes else "numbered", files, labels, classes or [], ids)


def test_checks_name_the_option() -> None:
    with pytest.raises(DataError, match=r"--labels: id 1 has class index 2, but the checkpoint has 2 classes \(0..1"):
        check_label_classes({0: 0, 1: 2}, ["cat", "dog"])
    check_label_classes({0: 0, 1: 1}, ["cat", "dog"])
    check_label_classes({0: 1, 1: 1}, ["cat", "dog"])  # a test set of one class
    with pytest.raises(DataError, match="--data: the folder's classes"):
        check_folder_classes(listing([0, 1], ["cat", "cow"]), ["cat", "dog"])
    assert check_folder_classes(listing([0, 1], ["dog", "cat"]), ["cat", "dog"]) is None
    assert check_folder_classes(listing([0, 1]), ["cat", "dog"]) is None
    # a folder of cats alone: a fair thing to score (it was refused), its accuracy over cats only
    assert check_folder_classes(listing([0, 1], ["cat"]), ["cat", "dog"]) == (
        "--data: the folder holds 1 of the checkpoint's 2 classes (cat): its accuracy is over those only")
    with pytest.raises(DataError, match="--shards: 3 is more than the 2 images"):
        check_shards(3, listing([0, 1]))
    with pytest.raises(DataError, match="--labels: none of the 2 ids"):
        check_labels_cover({7: 0}, listing([0, 1]))


def test_labels_that_do_not_match_the_folder_are_refused_or_said() -> None:
    """A CSV numbered from 1 for a folder numbered from 0 scored 50.51% "(99 of 100 labelled)" without
    a word; label ids naming no image were dropped silently."""
    folder = listing(list(range(100)))
    with pytest.raises(DataError, match=r"--labels: its ids are the folder's shifted by \+1 \(1..100 against 0..99"):
        check_labels_cover({i + 1: 0 for i in range(100)}, folder)
    assert check_labels_cover({i: 0 for i in range(100)}, folder) is None
    assert check_labels_cover({i: 0 for i in range(102)}, folder) == (
        "--labels: 2 label ids name no image in the folder (e.g. id 100): left out")
    assert check_labels_cover({i: 0 for i in range(1, 100)}, folder) == (
        "--labels: 1 of the 100 images has no label (e.g. id 0): the accuracy is over the other 99")


def test_scoring_helpers_import_no_torch() -> None:
    import subprocess

    code = ("import shared.scoring.protocol, shared.scoring.inputs, sys; "
            "assert 'torch' not in sys.modules and 'PIL' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
