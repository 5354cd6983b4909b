"""`orch delete` on stores written with the store's own functions (no worker): what goes, what stays,
what is refused; on SQLite and on PostgreSQL, whose foreign keys are checked differently."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select, update

from shared.config import load_settings
from shared.spec import ModelSpec, TrainSpec
from shared.store import Checkpoint, Epoch, Event, Job, JobKind, Lease, Score, Store, Study, open_store
from shared.store import jobs as store_jobs
from shared.store.schema import Outbox
from tests.conftest import REPO, Orch
from tests.orchestrator.study_builder import Grid, build_study
from worker.artifacts_owner import claim_artifacts

WRONG = Grid(name="wrong", norms=("bn", "ln"), groups=(1,), seeds=(0, 1), epochs=2, scored={("bn", 1, 0)})
KEPT = Grid(name="kept", norms=("bn",), groups=(1,), seeds=(0,), epochs=2, scored={("bn", 1, 0)})


def open_for(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The store `orch` uses (its SQLite file, or its PostgreSQL database)."""
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    if "ORCH_DATABASE_URL" in orch.env:
        monkeypatch.setenv("ORCH_DATABASE_URL", orch.env["ORCH_DATABASE_URL"])
    return open_store(load_settings(orch.home))


def two_studies(orch: Orch, store: Store) -> tuple[list[int], list[int]]:
    """Study "wrong" (4 runs, one scored) and "kept" (1 run, scored), each job with a folder of files
    as a worker leaves them; returns the job ids of each, scoring runs and shards included."""
    build_study(store, WRONG)
    build_study(store, KEPT)
    with store.session() as s:  # the builder records each scoring run's result on the run, its shard left queued
        s.execute(update(Job).where(Job.kind == "score_shard").values(status="succeeded"))
    settings = load_settings(orch.home)
    claim_artifacts(settings.artifacts, store)
    by_study: dict[str, list[int]] = {"wrong": [], "kept": []}
    with store.session() as s:
        jobs = list(s.scalars(select(Job).order_by(Job.id)))
        by_id = {job.id: job for job in jobs}
        for job in jobs:  # a scoring run (and its shard) belongs with its training job's study
            run = by_id[job.parent_id] if job.parent_id else job
            trained = by_id[run.source_job_id] if run.source_job_id else run
            by_study[trained.study.name if trained.study and trained.study.name else "?"].append(job.id)
            if job.kind != "score_shard":
                folder = settings.job_dir(job.id)
                folder.mkdir(parents=True)
                (folder / "ckpt-e2-t1.pt").write_bytes(b"w" * 300_000)
    return by_study["wrong"], by_study["kept"]


def counts(store: Store, job_ids: list[int]) -> dict[str, int | None]:
    """Rows that name these jobs, by table."""
    with store.session() as s:
        out = {table.__tablename__: s.scalar(select(func.count()).select_from(table).where(table.job_id.in_(job_ids)))
               for table in (Epoch, Checkpoint, Event, Outbox)}
        out["jobs"] = s.scalar(select(func.count()).select_from(Job).where(Job.id.in_(job_ids)))
        out["scores"] = s.scalar(select(func.count()).select_from(Score).where(Score.source_job_id.in_(job_ids)))
        out["studies"] = s.scalar(select(func.count()).select_from(Study))
    return out


@pytest.fixture(params=["embedded", "cluster"])
def any_orch(request: pytest.FixtureRequest) -> Orch:
    return request.getfixturevalue("orch" if request.param == "embedded" else "cluster_orch")


def test_a_study_goes_with_its_scoring_runs_rows_and_folders(any_orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_for(any_orch, monkeypatch)
    wrong, kept = two_studies(any_orch, store)
    before = counts(store, kept)
    assert counts(store, wrong)["epochs"] == 8 and counts(store, wrong)["scores"] == 1

    out = any_orch.json("delete", "--study", "wrong", "--yes")
    assert out["job_ids"] == wrong and out["study"] == "wrong" and not out["dry_run"]
    assert out["mb"] == 1.5  # 5 folders of 300 kB: 4 training runs and the scoring run (its shard has none)
    assert counts(store, wrong) == {"epochs": 0, "checkpoints": 0, "events": 0, "outbox": 0, "jobs": 0, "scores": 0,
                                    "studies": 1}
    assert counts(store, kept) == {**before, "studies": 1}  # the other study, its runs and its score untouched
    settings = load_settings(any_orch.home)
    assert not any(settings.job_dir(j).exists() for j in wrong)
    assert all(settings.job_dir(j).is_dir() for j in kept if j != kept[-1])  # (the shard has no folder)
    assert sorted(job["id"] for job in any_orch.json("status")) == kept
    gone = any_orch.run("report", "--study", "wrong")
    assert gone.returncode == 2 and "no study with id or name 'wrong'" in gone.stderr
    assert any_orch.json_report("--study", "kept")[0]["n"] == 1


def test_dry_run_says_what_would_go_and_deletes_nothing(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_for(orch, monkeypatch)
    wrong, _ = two_studies(orch, store)
    before = counts(store, wrong)
    out = orch.run("delete", "--study", "wrong", "--dry-run", check=True).stdout
    train, score, shard = wrong[:4], wrong[4], wrong[5]
    assert train == list(range(train[0], train[0] + 4))  # consecutive: said as a range
    assert out.startswith(f"would delete study wrong: 4 training runs ({train[0]}-{train[-1]}), 1 scoring run "
                          f"({score}), 1 shard ({shard}); would free 1.5 MB (5 job folders under "), out
    assert counts(store, wrong) == before
    assert all(load_settings(orch.home).job_dir(j).is_dir() for j in (*train, score))


def test_a_running_job_refuses_the_whole_delete(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_for(orch, monkeypatch)
    wrong, _ = two_studies(orch, store)
    with store.session() as s:
        study_id = s.scalar(select(Study.id).where(Study.name == "wrong"))
        spec = TrainSpec(model=ModelSpec(arch="resnet18", image_size=32, num_classes=2), data="/d/train", epochs=1)
        running = store_jobs.add_job(s, JobKind.train, spec, study_id=study_id).id
    assert Lease.acquire(store, running, "lab-gpu-1:100", ttl=30) is not None
    before = counts(store, [*wrong, running])
    proc = orch.run("delete", "--study", "wrong", "--yes")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"Error: --study: only finished jobs are deleted, and {running} (running) is not: `orch "
                           "cancel` it first; nothing was deleted\n")
    assert counts(store, [*wrong, running]) == before


def test_without_a_terminal_it_needs_yes(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_for(orch, monkeypatch)
    wrong, _ = two_studies(orch, store)
    before = counts(store, wrong)
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "delete", "--study", "wrong"], env=orch.env,
                          cwd=REPO, input="y\n", capture_output=True, text=True, timeout=60)  # a pipe, not a terminal
    assert proc.returncode == 2
    assert proc.stderr == ("Error: --yes: deleting asks first, and there is no terminal to ask at; pass --yes "
                           "(--dry-run shows what would go)\n")
    assert counts(store, wrong) == before


@pytest.mark.parametrize("answer", ["n", "y"])
def test_at_a_terminal_it_asks_first(orch: Orch, monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    store = open_for(orch, monkeypatch)
    wrong, kept = two_studies(orch, store)
    before = counts(store, wrong)
    primary, secondary = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "delete", str(kept[0])], env=orch.env, cwd=REPO,
                            stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.write(primary, f"{answer}\n".encode())
    out, err = proc.communicate(timeout=60)
    os.close(primary)
    os.close(secondary)
    assert out.startswith(f"delete 1 training run ({kept[0]}), 1 scoring run ({kept[1]}), 1 shard ({kept[2]}) and "
                          "0.6 MB of their files? [y/N]: "), out
    if answer == "n":
        assert proc.returncode == 1 and "Aborted!" in err
        assert counts(store, kept)["jobs"] == 3
    else:
        assert proc.returncode == 0 and counts(store, kept)["jobs"] == 0
    assert counts(store, wrong) == before


def test_another_stores_artifacts_folder_is_not_touched(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_for(orch, monkeypatch)
    _, kept = two_studies(orch, store)
    settings = load_settings(orch.home)
    settings.artifacts_owner.write_text("another-store\n")
    out = orch.run("delete", str(kept[0]), "--yes", check=True).stdout
    assert out.splitlines() == [
        f"deleted 1 training run ({kept[0]}), 1 scoring run ({kept[1]}), 1 shard ({kept[2]}); no job folder here to "
        "remove",
        f"{settings.artifacts} holds another store's files (its store-id is not this store's): no folder there was "
        "touched"]
    assert counts(store, kept)["jobs"] == 0 and settings.job_dir(kept[0]).is_dir()


def test_a_shard_alone_is_refused_naming_its_run(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_for(orch, monkeypatch)
    _, kept = two_studies(orch, store)
    proc = orch.run("delete", str(kept[2]), "--yes")
    assert proc.returncode == 2
    assert proc.stderr == (f"Error: JOB_ID: job {kept[2]} is a shard of scoring run {kept[1]}: `orch delete "
                           f"{kept[1]}` deletes the run with its shards\n")
    missing = orch.run("delete", "999", "--yes")
    assert missing.returncode == 2 and missing.stderr == "Error: JOB_ID: no job 999\n"
    assert counts(store, kept)["jobs"] == 3


def test_a_job_requeued_after_it_was_read_rolls_the_delete_back(orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race `orch retry` in another terminal makes: the statuses were read finished, and one is queued
    by the time the rows go. The jobs' DELETE counts what it removed, and nothing is deleted."""
    from shared.errors import OrchError
    from shared.store.deletion import delete_jobs

    store = open_for(orch, monkeypatch)
    wrong, _ = two_studies(orch, store)
    before = counts(store, wrong)
    with store.session() as s:  # retried meanwhile
        s.execute(update(Job).where(Job.id == wrong[0]).values(status="queued"))
    with pytest.raises(OrchError, match=r"^1 of the jobs left their finished state while being deleted"):
        with store.session() as s:
            delete_jobs(s, wrong, s.scalar(select(Study).where(Study.name == "wrong")))
    assert counts(store, wrong) == before
