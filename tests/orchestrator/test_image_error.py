"""A comparison that counts the validation (or test) images' own sampling error (orchestrator/analysis/image_error.py).

The simulations draw a population of images and two configs that are equally accurate on it but
make different, stable mistakes (each image has its own chance of being right under each config);
every seed of a study is validated on the same sample of that population.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.analysis.image_error import image_error
from orchestrator.analysis.stats import compare
from orchestrator.analysis.study import scale_of
from shared.store import Job
from shared.store.jobs import add_study
from shared.val_hits import pack, unpack
from tests.conftest import Orch
from tests.orchestrator.study_builder import add_run, add_score, open_home

SCALE = scale_of("val_acc")


def null_study(rng: np.random.Generator, images: int, seeds: int) -> list[tuple[list[bool], list[bool]]]:
    """Two configs equal on the population (20,000 images), each with its own per-image chances."""
    easy = rng.beta(2, 1, 20_000)
    a = np.clip(easy + rng.normal(0, 0.25, easy.size), 0.02, 0.98)
    b = np.clip(easy + rng.normal(0, 0.25, easy.size), 0.02, 0.98)
    b = np.clip(b + a.mean() - b.mean(), 0, 1)
    sample = rng.choice(easy.size, images, replace=False)
    return [((rng.random(images) < a[sample]).tolist(), (rng.random(images) < b[sample]).tolist())
            for _ in range(seeds)]


def verdicts(hits: list[tuple[list[bool], list[bool]]], *, counted: bool) -> str:
    values = {s: float(np.mean(a)) for s, (a, _) in enumerate(hits)}
    baseline = {s: float(np.mean(b)) for s, (_, b) in enumerate(hits)}
    return compare(values, baseline, SCALE, images=image_error(hits) if counted else None).outcome


def test_equal_configs_are_called_different_at_the_stated_rate_only_when_the_images_count() -> None:
    """200 images, 5 seeds: over the seeds alone, 17% of such studies said "better" or "worse" (in
    a run of this simulation with 600 studies); counting the images, under 7% (5% is the promise)."""
    rng = np.random.default_rng(11)
    studies = [null_study(rng, 200, 5) for _ in range(300)]
    alone = np.mean([verdicts(h, counted=False) in ("better", "worse") for h in studies])
    counted = np.mean([verdicts(h, counted=True) in ("better", "worse") for h in studies])
    assert alone > 0.10, alone  # the problem this fixes: seeds cannot see what their images share
    assert counted <= 0.075, counted


def test_a_real_difference_is_still_found() -> None:
    rng = np.random.default_rng(3)
    hits = [((rng.random(500) < 0.85).tolist(), (rng.random(500) < 0.70).tolist()) for _ in range(4)]
    values = {s: float(np.mean(a)) for s, (a, _) in enumerate(hits)}
    baseline = {s: float(np.mean(b)) for s, (_, b) in enumerate(hits)}
    result = compare(values, baseline, SCALE, images=image_error(hits))
    assert result.outcome == "better" and result.p is not None and result.p < 0.01 and result.images == 500


def test_two_images_on_every_seed_are_no_finding_and_no_seed_count_is_offered() -> None:
    """Six seeds each +2 points on 100 images: the sign test over seeds says p=0.031 ("better"); it is
    the same 2 images every time, which images of the same kind would not repeat."""
    baseline_hits = [i < 60 for i in range(100)]
    config_hits = [i < 62 for i in range(100)]
    hits = [(config_hits, baseline_hits)] * 6
    values, baseline = {s: 0.62 for s in range(6)}, {s: 0.60 for s in range(6)}
    assert compare(values, baseline, SCALE).outcome == "better"  # seeds alone
    result = compare(values, baseline, SCALE, images=image_error(hits))
    assert result.outcome == "unclear" and result.too_few_images and result.seeds_cell == "none: too few validation images"
    assert result.p_seeds == pytest.approx(0.03125) and result.p is not None and result.p > 0.1
    assert result.verdict.startswith("no detectable difference with n=6 seeds (+2.00 points on every one of 6 seeds "
                                     "(zero spread: no t interval; sign test p=0.031; counting the sampling error of "
                                     "the 100 validation images p=")
    assert result.verdict.endswith("); no number of seeds would detect 2.00 points at 80% power on these 100 "
                                   "validation images (their own sampling error of the difference is ±2.76 points); "
                                   "more validation images would"), result.verdict


def test_hits_pack_one_bit_an_image_in_numpys_order() -> None:
    bits = [True, False, True, True, False, False, False, True, True]
    assert pack(bits) == "sYA=" and unpack("sYA=", 9) == bits
    assert np.packbits(np.array(bits)).tobytes() == bytes([0b10110001, 0b10000000])
    with pytest.raises(ValueError, match="2 bytes hold no 20 images"):
        unpack("sYA=", 20)


def test_the_report_counts_the_images_where_every_run_recorded_its_hits(orch: Orch,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Through `orch report --study`: runs whose rows hold their hits (as the worker writes them) pair
    image by image; a config with a run from before the hits falls back to the seeds alone."""
    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        study_id = add_study(s, "hits", {"norm": "bn,ln,in", "seeds": "0,1,2"}).id
    accuracies = {"bn": 0.60, "ln": 0.62, "in": 0.63}
    for norm, acc in accuracies.items():
        for seed in range(3):
            right = round((acc + 0.01 * seed * (norm == "in")) * 100)
            job_id = add_run(store, study_id, norm, 1, seed, 1, val_accs=[right / 100])
            if norm == "in" and seed == 2:
                continue  # recorded before the hits: its config is compared over the seeds alone
            with store.session() as s:
                s.get(Job, job_id).val_hits = {"set": "a" * 16, "images": 100, "best": pack([i < right for i in range(100)]),
                                               "last": pack([i < right for i in range(100)]), "best_epoch": 1, "last_epoch": 1}
    rows = {r["config"]: r for r in orch.json_report("--study", "hits")}
    assert rows["norm=ln"]["images_counted"] == 100 and rows["norm=ln"]["p_seeds_only"] == pytest.approx(0.25)
    assert rows["norm=ln"]["seeds_for_80_power_too_few_images"] is True
    # the sign test's p (0.25) is already the larger: the images change the seed count offered, not the p
    assert rows["norm=ln"]["p_value"] == pytest.approx(0.25) and rows["norm=ln"]["seeds_for_80_power"] is None
    assert rows["norm=ln"]["verdict"].endswith("no number of seeds would detect 2.00 points at 80% power among 2 "
                                               "comparisons on these 100 validation images (their own sampling error "
                                               "of the difference is ±2.76 points); more validation images would")
    assert rows["norm=in"]["images_counted"] is None and rows["norm=in"]["p_seeds_only"] is None
    table = orch.run("report", "--study", "hits", check=True).stdout
    assert "on these 100 validation images" in " ".join(table.split()), table
    assert json.loads(orch.run("report", "--study", "hits", "--format", "json", check=True).stdout)[0]["n"] == 3


def test_test_acc_comparisons_count_the_test_images_of_the_scoring_runs(orch: Orch,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--metric test_acc`: every seed's best checkpoint is scored on the same test folder, so the test
    images' own sampling error repeats on each seed as the validation images' does. Scored on another
    folder (another set), a config falls back to the seeds alone."""
    store = open_home(orch.home, monkeypatch)
    with store.session() as s:
        study_id = add_study(s, "tested", {"norm": "bn,ln,in", "seeds": "0,1,2,3,4,5"}).id
    for norm, right in {"bn": 60, "ln": 62, "in": 70}.items():
        for seed in range(6):
            got = right + (norm == "in") * (seed % 2)  # a spread over seeds: a t-test, p far below 0.05
            job_id = add_run(store, study_id, norm, 1, seed, 1, val_accs=[0.5])
            folder = "b" * 16 if norm == "in" and seed == 5 else "a" * 16  # one seed scored elsewhere
            add_score(store, job_id, got / 100, hits={"set": folder, "images": 100,
                                                       "hits": pack([i < got for i in range(100)])})
    unscored = add_run(store, study_id, "bn", 1, 6, 1, val_accs=[0.5])  # the baseline's seed 6: not scored yet
    rows = {r["config"]: r for r in orch.json_report("--study", "tested", "--metric", "test_acc")}
    assert rows["norm=bn"]["n"] == 6
    ln = rows["norm=ln"]
    assert ln["images_counted"] == 100 and ln["p_seeds_only"] == pytest.approx(0.03125), ln
    assert ln["vs_baseline"] == "unclear" and ln["seeds_for_80_power_too_few_images"] is True, ln  # over seeds alone: better
    assert ln["verdict"].endswith("on these 100 test images (their own sampling error of the difference is ±2.76 "
                                  "points); more test images would"), ln["verdict"]
    assert rows["norm=in"]["images_counted"] is None and rows["norm=in"]["vs_baseline"] == "better"
    # six seeds at 60 of the same 100 images: 60.0..60.0 over the seeds, about ±9.5 points on the images
    bn = rows["norm=bn"]
    assert bn["test_acc_ci95_low"] == pytest.approx(0.505, abs=0.01) and bn["test_acc_ci95_high"] == pytest.approx(0.695, abs=0.01)
    assert bn["interval_note"] == ("the 95% interval counts the sampling error of the 100 test images, wider than the "
                                   "seeds' spread"), bn
    table = " ".join(orch.run("report", "--study", "tested", "--metric", "test_acc", check=True).stdout.split())
    assert "count the sampling error of the 100 test images too" in table, table
    assert (f"note: no test accuracy, so not in these numbers: job {unscored}; `orch submit score --study tested "
            "--data TEST_FOLDER --labels LABELS.csv --out preds/` scores the succeeded ones not scored on that folder "
            "yet") in table, table
