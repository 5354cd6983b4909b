"""The scoring protocol: a parent job, N shard jobs and one CSV, with one state machine.

`orch submit score` pins the inputs (shared/scoring/inputs.py), records the parent (never sent) and
its shards, and sends the shards. Each shard scores its slice into a part file and records it (a
fenced write on its own lease). The parent's `assembly` column (shared/store/schema.py Assembly)
says where the CSV stands; every move below is one conditional UPDATE whose condition comes from the
table of allowed moves (shared/store/schema.py ASSEMBLY_MOVES), so two movers never both win:

    waiting    -> assembling  the shard that completes the set takes the parent's lease (take_assembly)
    waiting    -> sent        the sweeper finds every shard succeeded and nobody assembling: it sends
                              an orch.score task for the parent (settle_parents)
    sent       -> assembling  the worker that leases that task (assemble_run)
    waiting    -> failed      a shard ended without its part: the shard itself fails the parent at once
                              (shard_failed); if its process died, the sweeper does (settle_parents)
    assembling -> done        CSV written, then the Score row and the parent's success in one fenced
                              transaction (assemble_run); then the parts are deleted
    assembling -> failed      an assembly check failed; --out is left as it was, the parts kept
    assembling -> assembling  its lease holder died: the sweeper requeues and re-sends the parent
    any but done -> failed    `orch cancel PARENT` (shared/store/jobs.py request_cancel)
    failed     -> waiting     `orch retry PARENT` (shared/store/jobs.py reset_for_retry)

The CLI only observes (`observe`). Store reads and the writes no lease covers: shared/store/scoring_runs.py;
the fenced writes: shared/store/lease.py.
"""
from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.config import redact
from shared.errors import DataError, JobCancelled, OrchError, StaleLease, Unavailable
from shared.scoring.csv_parts import assembled_hits, check_rows, header_line, remove_parts, totals, write_atomic
from shared.scoring.inputs import pinned, trained_on
from shared.spec import ScoreSpec
from shared.store import scoring_runs as runs
from shared.store.db import Store
from shared.store.lease import Lease
from shared.store.schema import Assembly, JobStatus
from shared.store.scoring_runs import ParentState, ShardState


class Verdict(enum.StrEnum):
    """What the shards say about the parent."""

    complete = "complete"  # every part is recorded: assemble
    failed = "failed"  # a shard ended without its part: the run cannot finish without a retry
    pending = "pending"  # shards still running


def verdict(shards: Sequence[ShardState]) -> tuple[Verdict, str | None]:
    """(verdict, reason): can the CSV be assembled, or never without a retry?"""
    if shards and all(s.done for s in shards):
        return Verdict.complete, None
    ended = [s for s in shards if s.status in (JobStatus.failed, JobStatus.cancelled) and not s.done]
    if ended:
        first = min(ended, key=lambda s: s.shard)
        return Verdict.failed, shard_error(first.shard, first.job_id, first.error or first.status)
    return Verdict.pending, None


def shard_error(shard: int, job_id: int, reason: str) -> str:
    return f"shard {shard} (job {job_id}): {reason}"


# --- a shard's side (worker/jobs/score_shards.py) ---

def shard_start(store: Store, parent_id: int, job_id: int) -> tuple[ShardState, bool]:
    """Before a shard works: (its recorded state, whether it has work to do). No work when its part
    is already in a run being assembled or done; JobCancelled when its run has ended without it."""
    parent = runs.parent_state(store, parent_id)
    mine = next(s for s in runs.shard_states(store, parent_id) if s.job_id == job_id)
    if parent is not None and parent.status == JobStatus.queued and parent.assembly == Assembly.waiting:
        return mine, True
    if mine.done and parent is not None and parent.assembly in (Assembly.sent, Assembly.assembling, Assembly.done):
        return mine, False
    status = parent.status if parent is not None else "gone"
    raise JobCancelled(f"score job {parent_id} is {status}; `orch retry {parent_id}` retries its failed shards")


def shard_failed(lease: Lease, parent_id: int, shard: int, reason: str) -> bool:
    """A shard that ends without its part fails its waiting parent at once (waiting -> failed)."""
    return lease.fail_parent(parent_id, shard_error(shard, lease.job_id, reason))


def take_assembly(store: Store, lease: Lease, parent_id: int, owner: str, ttl: float) -> Lease | None:
    """After a shard recorded its part: fail the parent if a sibling failed; if the set is complete,
    the parent's lease for this shard to assemble with (None: not complete, or a sibling has it)."""
    outcome, reason = verdict(runs.shard_states(store, parent_id))
    if outcome == Verdict.failed and reason:
        lease.fail_parent(parent_id, reason)
    if outcome != Verdict.complete:
        return None
    return Lease.acquire(store, parent_id, owner, ttl)  # of two shards finishing together, one gets it


# --- the assembly (a shard holding the parent's lease, or the parent's own orch.score task) ---

def assemble_run(lease: Lease, spec: ScoreSpec, source_job_id: int | None) -> dict[str, Any]:
    """Write --out from the parts and end the parent (assembling -> done), under the parent's lease.

    A failed check fails the parent (assembling -> failed) and raises DataError; a lost lease
    (StaleLease: its new holder finishes) and a store outage propagate (the lease expires and the
    sweeper re-sends the parent: assembling -> assembling).
    """
    try:
        lease.begin_assembly()
        return _assemble(lease, spec, source_job_id)
    except (StaleLease, Unavailable, JobCancelled):
        raise
    except Exception as exc:
        reason = f"assembling {spec.out}: {one_line(exc)}"
        lease.fail_assembly(reason)
        raise DataError(reason) from None


def _not_a_test_accuracy(store: Store, spec: ScoreSpec, source_job_id: int | None,
                         counts: dict[str, Any]) -> str | None:
    """Why this run's accuracy is not its training job's test accuracy (the report's test_acc), or
    None when it is: every image labelled, the job's best checkpoint, a folder it did not train or
    validate on. The report showed 100% for job 1 from 2 labelled images, and an early epoch's score."""
    if counts.get("accuracy") is None or source_job_id is None:
        return None  # nothing to show as a test accuracy, or no job to show it for
    if counts.get("labelled") != counts.get("n"):
        return "not every image labelled"
    from shared.store import reads
    from shared.store.schema import Job

    with store.session() as s:
        trained, job = reads.training_job(s, source_job_id), s.get(Job, source_job_id)
        job_spec = dict(job.spec) if job is not None else {}
    if trained is None or trained.best is None or Path(trained.best).resolve() != Path(spec.checkpoint).resolve():
        return f"not job {source_job_id}'s best checkpoint"
    role = trained_on(job_spec, spec.data)
    return f"job {source_job_id}'s {role} folder" if role else None


def _assemble(lease: Lease, spec: ScoreSpec, source_job_id: int | None) -> dict[str, Any]:
    shards = runs.shard_states(lease.store, lease.job_id)
    outcome, reason = verdict(shards)
    if outcome != Verdict.complete:
        raise DataError(reason or f"score job {lease.job_id}: not every shard is done; retry the failed shards")
    classes: list[str] = next((s.result["classes"] for s in shards if s.result and s.result.get("classes")), [])
    header = header_line(classes, spec.probs, spec.names) if spec.header else None
    counts = assemble(Path(spec.out), shards, header=header, spec=spec, job_id=lease.job_id)
    result = {"out": spec.out, "shards": len(shards), "classes": classes, **counts}
    if counts.get("kept"):
        result["kept"] = counts.pop("kept")
    not_test = _not_a_test_accuracy(lease.store, spec, source_job_id, counts)
    if not_test:
        result["not_test_acc"] = not_test  # `--wait` says why the report does not show it
    score = {"source_job_id": source_job_id, "out": spec.out, "n_images": counts["n"],
             "accuracy": counts["accuracy"], "images_per_s": counts["images_per_s"], "is_test": not not_test,
             # which test images it got right: the report counts their sampling error in test_acc's comparisons
             "hits": None if not_test else assembled_hits([s.result or {} for s in shards],
                                                          pinned(spec, lease.job_id).files_sha256)}
    lease.complete_score(result, score)
    # only now: until the success is recorded, a new holder of the lease may assemble again from them
    remove_parts(Path(s.result["part"]) for s in shards if s.result)
    return result


def assemble(out: Path, shards: Sequence[ShardState], *, header: str | None, spec: ScoreSpec | None = None,
             job_id: int = 0) -> dict[str, Any]:
    """Concatenate the shards' parts (in shard order) into `out`, atomically; the run's totals, and
    where the CSV is kept beside the parts ("kept": in the run's folder of ORCH_ARTIFACTS).

    `out` is a path on the assembling worker's machine: in a lab whose hosts share only
    ORCH_ARTIFACTS, the submitting host's `--wait` copies the kept CSV to its own `out`.
    With `spec`, the parts must hold every id pinned at submit exactly once, in order, first.
    """
    ordered = sorted(shards, key=lambda s: s.shard)
    parts = [Path(s.result["part"]) for s in ordered if s.result]
    missing = [p for p in parts if not p.is_file()]
    if missing:
        raise DataError(f"score parts missing: {', '.join(map(str, missing[:3]))}")
    texts = [p.read_text() for p in parts]
    if spec is not None:
        inputs = pinned(spec, job_id)
        check_rows(texts, inputs.files, inputs.ids_sha256)
    rows = ([header] if header else []) + texts
    kept = parts[0].parent.parent / Path(out).name if parts else None  # the run's folder, beside shards/
    if kept is not None and kept.resolve() != Path(out).resolve():
        write_atomic(kept, rows)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(out), rows)
    return {**totals([s.result or {} for s in ordered]), **({"kept": str(kept)} if kept is not None else {})}


def one_line(exc: BaseException) -> str:
    if isinstance(exc, OrchError):
        return str(exc).splitlines()[0]
    return redact(f"{type(exc).__name__}: {exc}".splitlines()[0])


# --- the sweeper (worker/sweeper.py) and the CLI ---

def settle_parents(store: Store) -> list[ParentState]:
    """Waiting parents that nobody moved: fail those with a failed shard (waiting -> failed); return,
    once, those whose shards all succeeded without an assembler (waiting -> sent) for the caller to
    send as orch.score tasks."""
    to_send: list[ParentState] = []
    for parent, shards in runs.waiting_parents(store):
        outcome, reason = verdict(shards)
        if outcome == Verdict.failed and reason:
            runs.fail_waiting_parent(store, parent.job_id, reason)
        elif outcome == Verdict.complete and all(s.ended for s in shards) and runs.mark_sent(store, parent.job_id):
            to_send.append(parent)
    return to_send


def observe(store: Store, parent_id: int) -> tuple[ParentState | None, Verdict, str | None]:
    """What `--wait` and `orch status` show: the parent and what its shards say. Reads only."""
    outcome, reason = verdict(runs.shard_states(store, parent_id))
    return runs.parent_state(store, parent_id), outcome, reason
