"""Score shards run in-process against a real store and engine: assembly, order, redelivery, failures."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings, load_settings
from shared.data import scan
from shared.errors import DataError, JobCancelled
from shared.scoring.inputs import pin
from shared.spec import ScoreSpec
from shared.store import Job, JobStatus, Lease, Score, Store, open_store
from shared.store.scoring_runs import add_score_run
from worker.context import JobContext
from worker.jobs import score_shards as score_job

CLASSES = ["cat", "dog"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shared.data import write_synthetic

    out = tmp_path_factory.mktemp("score-data")
    write_synthetic(out, classes=CLASSES, counts={"val": 8, "test": 23}, size=32, layout="folder")
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained resnet18 at 32 px in orch's checkpoint format: scoring needs weights, not skill."""
    from tests.shared.data_helpers import write_untrained_checkpoint

    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt", CLASSES)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Store]]:
    for name in ("ORCH_DATABASE_URL", "ORCH_BROKER_URL", "ORCH_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(tmp_path / "home")
    store = open_store(settings)
    yield settings, store
    store.dispose()


def submit(store: Store, spec: ScoreSpec) -> tuple[int, list[int]]:
    """What `orch submit score` records (its inputs pinned), without a broker."""
    spec = pin(spec, scan(Path(spec.data)))
    with store.session() as s:
        parent, shards = add_score_run(s, spec, queue="orch", source_job_id=None)
        return parent.id, [shard.id for shard in shards]


def run_job(settings: Settings, store: Store, job_id: int) -> dict[str, Any] | None:
    """One delivery, as the supervisor does it: lease, run, record the ending."""
    lease = Lease.acquire(store, job_id, "test", ttl=60)
    if lease is None:
        return None
    with store.session() as s:
        job = s.get(Job, job_id)
        ctx = JobContext(settings=settings, store=store, lease=lease, kind=job.kind, spec=job.spec,
                         parent_id=job.parent_id, source_job_id=job.source_job_id, shard=job.shard,
                         should_stop=lambda: False)
    try:
        result = score_job.run(ctx)
    except Exception as exc:
        lease.finish(JobStatus.failed, error=str(exc), result={})
        raise
    lease.finish(JobStatus.succeeded, result=result)
    return result


def job(store: Store, job_id: int) -> Job:
    with store.session() as s:
        return s.get(Job, job_id)


def score_run(env: tuple[Settings, Store], out: Path, **fields: Any) -> tuple[int, list[int]]:
    settings, store = env
    parent, shards = submit(store, ScoreSpec(out=str(out), **fields))
    for shard in shards:
        run_job(settings, store, shard)
    return parent, shards


def test_sharded_equals_unsharded_in_numeric_id_order(env: tuple[Settings, Store], data: Path,
                                                      checkpoint: Path, tmp_path: Path) -> None:
    common = {"checkpoint": str(checkpoint), "data": str(data / "test"), "labels": str(data / "test_labels.csv")}
    one, _ = score_run(env, tmp_path / "one.csv", **common)
    three, shards = score_run(env, tmp_path / "three.csv", shards=3, **common)
    text = (tmp_path / "one.csv").read_text()
    assert text == (tmp_path / "three.csv").read_text()
    rows = [line.split(",") for line in text.splitlines()]
    assert [int(r[0]) for r in rows] == list(range(23))  # 10 after 9, not after 1; no header
    assert all(r[1] in ("0", "1") and len(r) == 2 for r in rows)
    settings, store = env
    assert [job(store, s).status for s in shards] == ["succeeded"] * 3
    # the parts are gone once the run succeeded: the CSV kept in the run's folder holds their rows
    assert not (settings.job_dir(three) / "shards").exists()
    assert (settings.job_dir(three) / "three.csv").read_text() == text
    with store.session() as s:
        scores = {row.job_id: row for row in s.query(Score)}
    assert scores[one].n_images == scores[three].n_images == 23
    assert scores[one].accuracy == scores[three].accuracy is not None and 0.0 <= scores[one].accuracy <= 1.0
    parent = job(store, three)
    assert parent.status == "succeeded" and parent.result["n"] == 23 and parent.result["shards"] == 3
    assert parent.assembly == "done"


def test_header_and_probabilities(env: tuple[Settings, Store], data: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    score_run(env, out, checkpoint=str(checkpoint), data=str(data / "test"), shards=2, probs=True, header=True)
    lines = out.read_text().splitlines()
    assert lines[0] == "id,label,prob_cat,prob_dog" and len(lines) == 24
    for line in lines[1:]:
        _, label, p0, p1 = line.split(",")
        assert abs(float(p0) + float(p1) - 1.0) < 1e-4 and int(label) == int(float(p1) > float(p0))


def test_labelled_folder_records_its_accuracy(env: tuple[Settings, Store], data: Path, checkpoint: Path,
                                              tmp_path: Path) -> None:
    parent, _ = score_run(env, tmp_path / "val.csv", checkpoint=str(checkpoint), data=str(data / "val"), shards=2)
    result = job(env[1], parent).result
    assert result["n"] == 8 and result["labelled"] == 8 and result["accuracy"] is not None


def test_redelivered_shard_does_not_score_again(env: tuple[Settings, Store], data: Path, checkpoint: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, store = env
    parent, (first, second) = submit(store, ScoreSpec(checkpoint=str(checkpoint), data=str(data / "test"),
                                                      out=str(tmp_path / "o.csv"), shards=2))
    run_job(settings, store, first)
    assert run_job(settings, store, first) is None  # a finished shard is not leased again

    # The second shard recorded its part, then its worker died before reporting: the job is requeued.
    lease = Lease.acquire(store, second, "dying", ttl=60)
    part = score_job._score_part(_ctx(settings, store, lease), ScoreSpec.model_validate(job(store, second).spec))
    lease.update(result=part)
    assert lease.release("worker died")

    import shared.engine

    monkeypatch.setattr(shared.engine, "score", lambda *a, **k: pytest.fail("scored a recorded shard again"))
    run_job(settings, store, second)
    assert job(store, parent).status == "succeeded" and len((tmp_path / "o.csv").read_text().splitlines()) == 23


def _ctx(settings: Settings, store: Store, lease: Lease | None) -> JobContext:
    assert lease is not None
    row = job(store, lease.job_id)
    return JobContext(settings=settings, store=store, lease=lease, kind=row.kind, spec=row.spec,
                      parent_id=row.parent_id, source_job_id=row.source_job_id, shard=row.shard,
                      should_stop=lambda: False)


def test_corrupt_image_fails_the_parent_and_writes_no_csv(env: tuple[Settings, Store], data: Path,
                                                          checkpoint: Path, tmp_path: Path) -> None:
    settings, store = env
    folder = tmp_path / "test"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.jpg").write_bytes((data / "test" / f"{i}.jpg").read_bytes())
    (folder / "2.jpg").write_bytes(b"not a jpeg")  # shard 1 of 3 holds ids 2 and 3
    out = tmp_path / "preds.csv"
    parent, (ok, bad, late) = submit(store, ScoreSpec(checkpoint=str(checkpoint), data=str(folder),
                                                      out=str(out), shards=3))
    run_job(settings, store, ok)
    with pytest.raises(DataError, match="corrupt image: 2.jpg"):
        run_job(settings, store, bad)
    failed = job(store, parent)
    assert failed.status == "failed" and failed.error.startswith(f"shard 1 (job {bad}): ")
    assert failed.assembly == "failed"
    assert "2.jpg" in failed.error and "\n" not in failed.error
    with pytest.raises(JobCancelled):  # a sibling that starts after the failure does no work
        run_job(settings, store, late)
    assert not out.exists() and list(tmp_path.glob(".preds.csv*")) == []


def test_parent_task_assembles_when_the_assembling_shard_died(env: tuple[Settings, Store], data: Path,
                                                              checkpoint: Path, tmp_path: Path) -> None:
    settings, store = env
    out = tmp_path / "o.csv"
    parent, (shard,) = submit(store, ScoreSpec(checkpoint=str(checkpoint), data=str(data / "test"), out=str(out)))
    lease = Lease.acquire(store, shard, "w", ttl=60)
    part = score_job._score_part(_ctx(settings, store, lease), ScoreSpec.model_validate(job(store, shard).spec))
    lease.update(result=part)
    lease.finish(JobStatus.succeeded, result=part)
    # the sweeper requeued the parent whose assembler died and re-sent it as an orch.score task
    result = run_job(settings, store, parent)
    assert result is not None and result["n"] == 23 and out.is_file()
    assert job(store, parent).status == "succeeded"


def copy_images(data: Path, folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        (folder / f"{i}.jpg").write_bytes((data / "test" / f"{i}.jpg").read_bytes())
    return folder


def run_fails(env: tuple[Settings, Store], parent: int, shard: int, error: type[Exception], message: str) -> str:
    """The shard fails with `message` (one line), and so does its parent, which writes no CSV."""
    settings, store = env
    with pytest.raises(error, match=message):
        run_job(settings, store, shard)
    failed = job(store, parent)
    assert failed.status == "failed" and failed.assembly == "failed" and "\n" not in failed.error
    assert message.split(":")[0] in failed.error
    return failed.error


@pytest.mark.parametrize("change", ["added", "resized"])
def test_a_folder_that_changed_after_submit_fails_the_run(env: tuple[Settings, Store], data: Path, checkpoint: Path,
                                                          tmp_path: Path, change: str) -> None:
    folder = copy_images(data, tmp_path / "test", 6)
    out = tmp_path / "o.csv"
    parent, (first, _) = submit(env[1], ScoreSpec(checkpoint=str(checkpoint), data=str(folder), out=str(out), shards=2))
    if change == "added":  # a file added between submit and the shard: 7 rows where 6 were pinned
        (folder / "6.jpg").write_bytes((data / "test" / "6.jpg").read_bytes())
        message = "--data: .* holds 7 images now but 6 when the run was submitted"
    else:  # the same names, another image
        (folder / "2.jpg").write_bytes((data / "test" / "9.jpg").read_bytes() + b"\0")
        message = "--data: .* changed since the run was submitted"
    run_fails(env, parent, first, DataError, message)
    assert not out.exists()


def test_a_checkpoint_that_changed_after_submit_fails_the_run(env: tuple[Settings, Store], data: Path,
                                                              checkpoint: Path, tmp_path: Path) -> None:
    mine = tmp_path / "best.pt"
    mine.write_bytes(checkpoint.read_bytes())
    parent, (shard,) = submit(env[1], ScoreSpec(checkpoint=str(mine), data=str(data / "test"), out=str(tmp_path / "o.csv")))
    mine.write_bytes(checkpoint.read_bytes() + b"retrained")  # another training run rewrote the file
    from shared.errors import CheckpointError

    run_fails(env, parent, shard, CheckpointError, "--checkpoint: .* changed since the run was submitted")


def test_a_spec_without_pinned_inputs_is_refused(env: tuple[Settings, Store], data: Path, checkpoint: Path,
                                                 tmp_path: Path) -> None:
    settings, store = env
    spec = ScoreSpec(checkpoint=str(checkpoint), data=str(data / "test"), out=str(tmp_path / "o.csv"))
    with store.session() as s:  # as a job stored before inputs were pinned
        parent, (shard,) = add_score_run(s, spec, queue="orch", source_job_id=None)
        parent_id, shard_id = parent.id, shard.id
    run_fails(env, parent_id, shard_id, DataError, "submitted before orch pinned scoring inputs")


def fake_parts(env: tuple[Settings, Store], shards: list[int], rows: list[str]) -> None:
    """Shards that recorded these part files and succeeded, without a model."""
    settings, store = env
    for shard, text in zip(shards, rows, strict=True):
        part = settings.job_dir(shard) / "part.csv"
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_text(text)
        lease = Lease.acquire(store, shard, "w", ttl=60)
        assert lease is not None
        lease.update(result={"part": str(part), "n": text.count("\n"), "seconds": 1.0})
        lease.finish(JobStatus.succeeded, result={"part": str(part)})


@pytest.mark.parametrize("rows, message", [
    (["0,1\n1,0\n2,1\n", "2,1\n3,0\n4,0\n5,1\n"], "7 rows but the folder had 6 images"),
    (["0,1\n1,0\n2,1\n", "2,1\n3,0\n4,0\n"], "id 2 appears 2 times"),
    (["0,1\n1,0\n2,1\n", "3,0\n4,0\n9,1\n"], "not the folder's ids at submit"),
])
def test_assembly_checks_every_pinned_id_appears_once(env: tuple[Settings, Store], data: Path, checkpoint: Path,
                                                      tmp_path: Path, rows: list[str], message: str) -> None:
    """The parent's own orch.score task (sent by the sweeper) assembles parts that do not add up: it
    fails with one line, and --out is not written."""
    settings, store = env
    out = tmp_path / "o.csv"
    folder = copy_images(data, tmp_path / "test", 6)
    parent, shards = submit(store, ScoreSpec(checkpoint=str(checkpoint), data=str(folder), out=str(out), shards=2))
    fake_parts(env, shards, rows)
    with pytest.raises(DataError, match=message):
        run_job(settings, store, parent)
    failed = job(store, parent)
    assert failed.status == "failed" and failed.assembly == "failed" and message in failed.error
    assert not out.exists()
    assert all(Path(job(store, shard).result["part"]).is_file() for shard in shards)  # kept for a retry
    fake_parts_ok = ["0,1\n1,0\n2,1\n", "3,0\n4,0\n5,1\n"]  # the same run with sound parts assembles
    parent, shards = submit(store, ScoreSpec(checkpoint=str(checkpoint), data=str(folder), out=str(out), shards=2))
    fake_parts(env, shards, fake_parts_ok)
    assert run_job(settings, store, parent) is not None and out.read_text() == "".join(fake_parts_ok)
    assert job(store, parent).assembly == "done"


def test_a_shard_stops_at_the_next_batch_once_its_worker_is_stopping(env: tuple[Settings, Store], data: Path,
                                                                     checkpoint: Path, tmp_path: Path) -> None:
    """SIGTERM to a worker during a shard: the shard scored on through the 10-s grace (and a longer one
    was killed there, its work thrown away); a shard has no checkpoint to write, so it stops at once."""
    settings, store = env
    _, (shard,) = submit(store, ScoreSpec(checkpoint=str(checkpoint), data=str(data / "test"),
                                          out=str(tmp_path / "o.csv"), batch_size=4, precision="fp32"))
    ctx = _ctx(settings, store, Lease.acquire(store, shard, "stopping", ttl=60))
    ctx = dataclasses.replace(ctx, should_stop=lambda: True)  # the stop came while it decoded
    with pytest.raises(JobCancelled, match=r"^stopped while scoring, 4 of 23 images done$"):
        score_job.run(ctx)
    assert not list(Path(settings.artifacts).rglob("*.csv")) and not (tmp_path / "o.csv").exists()  # no part, no CSV
