"""`orch status ID`'s stages line: a job's start-up and a scoring shard's stages, readable."""
from __future__ import annotations

from orchestrator.commands.status import stage_line

TRAIN = {"best_val_acc": 1.0, "startup": {"warm": True, "wait_ready_s": 2.647, "import_s": 0.0, "threads": 2,
                                          "take_s": 2.647, "store_s": 0.02, "data_s": 0.099, "build_s": 0.103,
                                          "first_step_s": 0.237}}
SHARD = {"n": 100, "timings": {"load_s": 0.126, "decode_s": 0.011, "int8_s": 0.319, "verify_s": 0.0, "infer_s": 0.032},
         "startup": {"warm": True, "wait_ready_s": 0.0, "take_s": 0.0, "store_s": 0.014}}


def test_a_training_jobs_start_up_to_its_first_step() -> None:
    assert stage_line(TRAIN) == ("3.11 s to the first step (take 2.65, store 0.02, data 0.10, build 0.10, "
                                 "first step 0.24; a warm job process, ready 2.65 s after the job was taken)")


def test_a_scoring_shards_stages_after_its_start_up() -> None:
    assert stage_line(SHARD) == ("0.50 s (take 0.00, store 0.01, load 0.13, decode 0.01, int8 0.32, verify 0.00, "
                                 "inference 0.03; a warm job process)")


def test_nothing_for_a_result_without_stages() -> None:
    assert stage_line({"out": "p.csv", "n": 200}) == ""
    assert stage_line({"startup": {"warm": False, "take_s": 4.0}}) == "4.00 s (take 4.00; a job process started for it)"
