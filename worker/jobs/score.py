"""Scoring jobs: each shard scores its slice of the folder; the last one done assembles the CSV.

A shard records its part file in its own result (a fenced write), then looks at its siblings: when
every shard's part is recorded it takes the parent job's lease (`acquire_lease`: of two shards
finishing together exactly one gets it), concatenates the parts into --out with an atomic rename,
and records the Score row and the parent's success in one fenced transaction. If that shard dies
mid-assembly the parent's lease expires, the sweeper re-sends the parent as an `orch.score` task,
and whichever worker takes it assembles (the `score` kind below). A shard that fails for good
fails the parent at once, and --out is never written.
"""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from shared.data import scan
from shared.errors import DataError, JobCancelled, StaleLease
from shared.scoring import (
    ShardState,
    assemble,
    check_folder_classes,
    check_label_classes,
    count_correct,
    format_rows,
    header_line,
    listing_items,
    parent_outcome,
    part_path,
    shard_error,
    shard_slice,
    truth_for,
    write_atomic,
)
from shared.spec import ScoreSpec, parse
from shared.store import JobStatus, Lease
from shared.store import jobs as store_jobs
from worker.child import classify
from worker.context import JobContext


def run(ctx: JobContext) -> dict[str, Any]:
    if ctx.kind == "score":
        return _run_parent(ctx)
    return _run_shard(ctx)


def _run_shard(ctx: JobContext) -> dict[str, Any]:
    parent, shard = _parent_of(ctx), ctx.shard or 0
    spec = parse(ScoreSpec, ctx.spec)
    status = store_jobs.parent_status(ctx.store, parent)
    if status != JobStatus.queued:
        raise JobCancelled(f"score job {parent} is {status}; `orch retry {parent}` retries its failed shards")
    mine = next(s for s in _shard_states(ctx, parent) if s.job_id == ctx.job_id)
    try:
        # A redelivered shard whose part was recorded (it died before reporting) does not score again.
        result = mine.result if mine.done and Path(mine.result["part"]).is_file() else _score_part(ctx, spec)
        ctx.lease.update(result=result)  # the fenced "part done" mark the siblings look for
    except BaseException as exc:
        outcome, reason = classify(exc)
        if outcome in ("failed", "cancelled"):
            ctx.lease.fail_parent(parent, shard_error(shard, ctx.job_id, reason))
        raise
    _settle_parent(ctx, parent, spec)
    return result


def _parent_of(ctx: JobContext) -> int:
    if ctx.parent_id is None or ctx.shard is None:
        raise DataError(f"job {ctx.job_id}: a score shard needs a parent job and a shard index")
    return ctx.parent_id


def _shard_states(ctx: JobContext, parent: int) -> list[ShardState]:
    return [ShardState.of(job) for job in store_jobs.shard_jobs(ctx.store, parent)]


def _score_part(ctx: JobContext, spec: ScoreSpec) -> dict[str, Any]:
    """Score this shard's slice and write its part file (atomically); the counts for the totals."""
    from shared.data import read_labels_csv
    from shared.engine import score

    listing = scan(Path(spec.data))
    items = shard_slice(listing_items(listing), spec.shards, ctx.shard or 0)
    labels = read_labels_csv(Path(spec.labels)) if spec.labels else None
    started = time.perf_counter()
    if items:
        out = score(Path(spec.checkpoint), Path(spec.data), batch_size=spec.batch_size, precision=spec.precision,
                    items=items, cache_dir=ctx.settings.cache_dir)
        ids, predicted, probs, classes = out["ids"], out["labels"], out["probs"], out["classes"]
        ran = {k: out[k] for k in ("precision", "int8_agreement", "int8_fallback") if k in out}
    else:  # more shards than images: an empty part keeps the shard arithmetic simple
        ids, predicted, probs, classes, ran = [], [], [], [], {}
    seconds = time.perf_counter() - started
    if classes:
        _check_classes(listing, labels, classes)
    correct, labelled = count_correct(ids, predicted, truth_for(listing, classes, labels))
    part = part_path(ctx.settings.job_dir(_parent_of(ctx)), ctx.shard or 0)
    part.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(part, [format_rows(ids, predicted, probs if spec.probs else None)])
    return {"part": str(part), "n": len(ids), "correct": correct, "labelled": labelled,
            "seconds": round(seconds, 3), "classes": list(classes), **ran}


def _check_classes(listing: Any, labels: dict[int, int] | None, classes: list[str]) -> None:
    """The submit-time checks again: the folder may have changed, or the CLI could not load the model."""
    if labels is not None:
        check_label_classes(labels, classes)
    check_folder_classes(listing, classes)


def _settle_parent(ctx: JobContext, parent: int, spec: ScoreSpec) -> None:
    """Fail the parent if a sibling ended without its part; assemble if this shard completed the set."""
    outcome, reason = parent_outcome(_shard_states(ctx, parent))
    if outcome == "failed" and reason:
        ctx.lease.fail_parent(parent, reason)
    if outcome != "complete":
        return
    owner = f"{socket.gethostname()}:shard-job-{ctx.job_id}"
    lease = Lease.acquire(ctx.store, parent, owner, ctx.settings.lease_ttl)
    if lease is None:
        return  # a sibling is assembling, or already did
    try:
        _assemble(ctx, lease, spec)
    except StaleLease:
        return  # the parent's lease expired mid-assembly: its new holder finishes it
    except Exception as exc:
        # Fail the parent and this shard alike, so that `orch retry PARENT` re-sends this shard,
        # whose run assembles again; a parent left queued would wait for nothing.
        reason = f"assembling {spec.out}: {classify(exc)[1]}"
        lease.finish(JobStatus.failed, error=reason)
        raise DataError(reason) from None


def _run_parent(ctx: JobContext) -> dict[str, Any]:
    """The parent as a task: only re-sent by the sweeper when an assembling shard died."""
    spec = parse(ScoreSpec, ctx.spec)
    outcome, reason = parent_outcome(_shard_states(ctx, ctx.job_id))
    if outcome != "complete":
        raise DataError(reason or f"score job {ctx.job_id}: not every shard is done; retry the failed shards")
    return _assemble(ctx, ctx.lease, spec)


def _assemble(ctx: JobContext, lease: Lease, spec: ScoreSpec) -> dict[str, Any]:
    """Write --out from the shards' parts and end the score job, under the score job's own lease."""
    shards = _shard_states(ctx, lease.job_id)
    classes = next((s.result.get("classes") for s in shards if s.result and s.result.get("classes")), [])
    header = header_line(classes, spec.probs) if spec.header else None
    totals = assemble(Path(spec.out), shards, header=header)
    result = {"out": spec.out, "shards": len(shards), "classes": classes, **totals}
    score = {"source_job_id": ctx.source_job_id, "out": spec.out, "n_images": totals["n"],
             "accuracy": totals["accuracy"], "images_per_s": totals["images_per_s"]}
    lease.complete_score(result, score)
    return result

