"""`--precision auto` on a CPU with native bf16 measures whether bf16 trains faster, once a machine."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import shared.engine.bf16_probe as probe_module
from shared.engine import train
from shared.engine.bf16_probe import CACHE_FILE, MIN_SPEEDUP, Bf16Probe, bf16_probe, machine_key, measure_speedup
from tests.shared.data_helpers import one_thread, tiny_spec


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The speed-ups the probe will "measure", in order; each one measured is popped."""
    speedups: list[float] = []
    monkeypatch.setattr(probe_module, "measure_speedup", lambda: speedups.pop(0))
    probe_module._KNOWN.clear()
    yield speedups
    probe_module._KNOWN.clear()


def test_bf16_only_where_it_measured_clearly_faster(timed: list[float], tmp_path: Path) -> None:
    timed += [0.8, MIN_SPEEDUP - 0.01, MIN_SPEEDUP, 1.9]
    verdicts = []
    for n in range(4):  # each in its own cache folder: measured each time
        got = bf16_probe(tmp_path / str(n))
        assert got.measured_now
        verdicts.append(got.pays)
    assert verdicts == [False, False, True, True] and timed == []
    assert bf16_probe(tmp_path / "0").says().startswith("--precision auto trains in fp32 on this CPU: bf16 steps ran "
                                                        "0.80x as fast as fp32")


def test_the_answer_is_kept_for_the_machine_and_read_back(timed: list[float], tmp_path: Path) -> None:
    timed.append(0.74)
    first = bf16_probe(tmp_path)
    assert first == Bf16Probe(0.74, measured_now=True)
    kept = json.loads((tmp_path / CACHE_FILE).read_text())
    assert kept[machine_key()]["speedup"] == 0.74
    probe_module._KNOWN.clear()  # another process: reads the file, measures nothing (timed is empty)
    assert bf16_probe(tmp_path) == Bf16Probe(0.74, measured_now=False)
    # another machine's answer in the same (shared) cache folder is kept beside this one's
    kept["Some Other CPU [avx512_bf16] torch 2.14.1 2 threads"] = {"speedup": 1.9}
    (tmp_path / CACHE_FILE).write_text(json.dumps(kept))
    probe_module._KNOWN.clear()
    assert bf16_probe(tmp_path).speedup == 0.74


def test_the_process_that_measured_decides_as_the_ones_that_read_its_answer(timed: list[float],
                                                                            tmp_path: Path) -> None:
    """The answer is kept rounded; the measuring process had used the unrounded one (CI: 1.5899999999999999
    against 1.59), which just under the threshold would pick fp32 there and bf16 in every other worker."""
    timed.append(MIN_SPEEDUP - 0.0004)
    measured = bf16_probe(tmp_path)
    probe_module._KNOWN.clear()
    read = bf16_probe(tmp_path)
    assert (measured.speedup, measured.pays) == (read.speedup, read.pays) == (MIN_SPEEDUP, True)


def test_a_corrupt_or_unwritable_cache_measures_again(timed: list[float], tmp_path: Path) -> None:
    (tmp_path / CACHE_FILE).write_text("{not json")
    timed += [1.9, 1.8]
    assert bf16_probe(tmp_path) == Bf16Probe(1.9, measured_now=True)
    assert json.loads((tmp_path / CACHE_FILE).read_text())[machine_key()]["speedup"] == 1.9
    probe_module._KNOWN.clear()
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # the cache "folder" is a file: nothing kept, the answer still given
    assert bf16_probe(blocked / "cache") == Bf16Probe(1.8, measured_now=True)


def test_the_probe_measures_real_steps_and_leaves_the_rng_and_threads_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the job's; the probe itself steps on one thread
    try:
        speedup = measure_speedup()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert math.isfinite(speedup) and 0.05 < speedup < 50
    assert torch.equal(torch.rand(3), expected)  # a job's seed still decides its model's initial weights


def test_a_training_job_says_what_auto_measured(timed: list[float], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.engine.precision as precision
    from shared.data import write_synthetic

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    write_synthetic(tmp_path / "d", classes=["cat", "dog"], counts={"train": 24, "val": 8}, size=32)
    spec = tiny_spec(tmp_path / "d" / "train", tmp_path / "d" / "val", epochs=1, precision="auto")
    notes: list[tuple[str, str]] = []

    def note(kind: str, message: str) -> None:
        notes.append((kind, message))
    timed.append(0.8)
    with one_thread():
        result: dict[str, Any] = train(spec, tmp_path / "run", cache_dir=tmp_path / "cache",
                                       on_note=note)
        assert (result["precision"], result["bf16_speedup"]) == ("fp32", 0.8)
        assert "probe_s" in result["startup"]  # the machine's first job: its start-up names the probe
        assert notes == [("info", Bf16Probe(0.8, True).says())]
        again = train(spec, tmp_path / "run2", cache_dir=tmp_path / "cache", on_note=note)
    assert again["precision"] == "fp32" and len(notes) == 1  # read back: no second measurement, no second note
    assert "probe_s" not in again["startup"]


def test_a_resume_keeps_the_precision_its_checkpoint_ran_in(timed: list[float], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Resumed on a worker with other threads (or another machine, or a deleted answer), auto measured
    again and could train epochs 1-2 in fp32 and 3-4 in bf16."""
    import shared.engine.precision as precision
    from shared.data import write_synthetic
    from shared.engine.precision import resolve

    class Interrupt(Exception):
        pass

    def stop_after_1(metrics: dict[str, Any]) -> None:
        if metrics["epoch"] == 1:
            raise Interrupt

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    write_synthetic(tmp_path / "d", classes=["cat", "dog"], counts={"train": 24, "val": 8}, size=32)
    spec = tiny_spec(tmp_path / "d" / "train", tmp_path / "d" / "val", epochs=2, precision="auto")
    timed += [0.8, 1.9]  # this machine's first answer, then another's
    with one_thread():
        with pytest.raises(Interrupt):
            train(spec, tmp_path / "run", stop_after_1, cache_dir=tmp_path / "cache")
        resumed = train(spec, tmp_path / "run", cache_dir=tmp_path / "elsewhere")  # another home: no answer kept
    assert resumed["precision"] == "fp32" and timed == [1.9]  # as its first epoch, and nothing measured
    cpu = torch.device("cpu")
    assert resolve("auto", cpu, trained_in="bf16").name == "bf16" and resolve("auto", cpu, trained_in="fp32").probe is None
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)  # a bf16 run resumed where bf16 is emulated
    assert resolve("auto", cpu, trained_in="bf16").name == "fp32"


def _probe_in_child(cache: str, results: Any) -> None:
    import os
    import time

    def slow_and_own() -> float:  # each process would answer differently, were both to measure
        time.sleep(0.5)
        return 1.0 + (os.getpid() % 97) / 100
    probe_module.measure_speedup = slow_and_own
    probe_module._KNOWN.clear()
    got = bf16_probe(Path(cache))
    results.put((got.speedup, got.measured_now))


def test_two_workers_first_jobs_measure_once_and_agree(tmp_path: Path) -> None:
    """Two workers on a new home measured together on the same cores (and could pick bf16 for one job
    of a study and fp32 for the next); now one measures and the other adopts its answer."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_probe_in_child, args=(str(tmp_path), results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(10)
    assert len({speedup for speedup, _ in got}) == 1 and sorted(now for _, now in got) == [False, True]
