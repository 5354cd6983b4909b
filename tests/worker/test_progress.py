"""StepProgress: the job's place written through its lease, at most every few seconds, cleared at a pass's end."""
from __future__ import annotations

from typing import Any

import pytest

from shared.errors import StaleLease
from worker.progress import StepProgress


class Recorder:
    """A lease that keeps what it was asked to write."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.written: list[dict[str, Any] | None] = []
        self.fail = fail

    def update_progress(self, progress: dict[str, Any] | None) -> None:
        if self.fail is not None:
            raise self.fail
        self.written.append(progress)


def places(lease: Recorder) -> list[tuple[str, int | None, int, int] | None]:
    return [None if p is None else (p["phase"], p["epoch"], p["done"], p["total"]) for p in lease.written]


def test_a_pass_writes_after_its_first_batch_and_clears_at_its_end() -> None:
    lease = Recorder()
    progress = StepProgress(lease, every_s=0.0)  # type: ignore[arg-type]
    for done in (64, 128, 192, 256):
        progress("training", 1, done, 256)
    progress("validation", 1, 100, 100)  # a pass of one batch: nothing to say, nothing to clear
    assert places(lease) == [("training", 1, 128, 256), ("training", 1, 192, 256), None]
    assert lease.written[0] is not None and lease.written[0]["images_per_s"] > 0


def test_writes_are_spaced_and_a_short_pass_writes_nothing() -> None:
    lease = Recorder()
    progress = StepProgress(lease, every_s=3600.0)  # type: ignore[arg-type]
    for done in range(10, 101, 10):
        progress("training", 2, done, 100)
    assert lease.written == []  # no write inside the hour, so no clear at the end either


def test_a_second_folders_decode_is_a_new_pass() -> None:
    """A training folder decoded, then its validation folder: the count starts at 0 again."""
    lease = Recorder()
    progress = StepProgress(lease, every_s=0.0)  # type: ignore[arg-type]
    for done in (64, 128, 200):
        progress("decoding", None, done, 200)
    for done in (64, 128, 150):
        progress("decoding", None, done, 150)
    assert places(lease) == [("decoding", None, 128, 200), None, ("decoding", None, 128, 150), None]


def test_a_store_that_does_not_answer_is_not_the_jobs_failure_but_a_lost_lease_is() -> None:
    progress = StepProgress(Recorder(fail=RuntimeError("database is locked")), every_s=0.0)  # type: ignore[arg-type]
    progress("training", 1, 1, 3)
    progress("training", 1, 2, 3)  # written and refused: only a display
    lost = StepProgress(Recorder(fail=StaleLease("job 7: lease taken over")), every_s=0.0)  # type: ignore[arg-type]
    lost("training", 1, 1, 3)
    with pytest.raises(StaleLease):
        lost("training", 1, 2, 3)
