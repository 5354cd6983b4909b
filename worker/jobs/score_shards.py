"""The job runner of a scoring run: a shard scores its slice of the folder into a part file; the
shard that completes the set (or the parent's own orch.score task) assembles the CSV.

The protocol (who fails the parent, when assembly is due, its checks) is shared/scoring/protocol.py;
this module adds the work: checking the pinned inputs, running the model (shared/engine), writing
the part. A shard that fails for good fails the parent at once, and --out is never written.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import select

from shared.data import Listing, scan
from shared.engine.progress import Progress
from shared.errors import DataError, JobCancelled, StaleLease
from shared.scoring import protocol
from shared.scoring.csv_parts import (
    count_correct,
    format_rows,
    listing_items,
    part_path,
    shard_hits,
    shard_slice,
    truth_for,
    write_atomic,
)
from shared.scoring.inputs import check_folder_classes, check_label_classes, pinned, verify_checkpoint, verify_folder
from shared.spec import ScoreSpec, parse
from shared.store import Job, Outcome
from shared.store.lease import patiently
from worker.child import classify
from worker.context import JobContext
from worker.progress import StepProgress


def run(ctx: JobContext) -> dict[str, Any]:
    if ctx.kind == "score":
        return _run_parent(ctx)
    return _run_shard(ctx)


def _run_shard(ctx: JobContext) -> dict[str, Any]:
    parent, shard = _parent_of(ctx), ctx.shard or 0
    spec = parse(ScoreSpec, ctx.spec)
    mine, to_do = patiently(lambda: protocol.shard_start(ctx.store, parent, ctx.job_id), ctx.lease.patience_s,
                            ctx.job_id)  # reads only: safe to run again
    if not to_do and mine.result is not None:
        return mine.result  # its part is in a run already being assembled
    try:
        # A redelivered shard whose part was recorded (it died before reporting) does not score again.
        done = mine.result if mine.done and mine.result and Path(mine.result["part"]).is_file() else None
        result = done or _score_part(ctx, spec)
        ctx.lease.update(result=result)  # the fenced "part done" mark the siblings look for
    except BaseException as exc:
        outcome, reason = classify(exc)
        if outcome in (Outcome.failed, Outcome.cancelled):
            protocol.shard_failed(ctx.lease, parent, shard, reason)
        raise
    _assemble_if_last(ctx, parent, spec)
    return result


def _parent_of(ctx: JobContext) -> int:
    if ctx.parent_id is None or ctx.shard is None:
        raise DataError(f"job {ctx.job_id}: a score shard needs a parent job and a shard index")
    return ctx.parent_id


def _score_part(ctx: JobContext, spec: ScoreSpec) -> dict[str, Any]:
    """Check the pinned inputs, score this shard's slice and write its part file (atomically)."""
    from shared.data import read_labels_csv

    inputs = pinned(spec, ctx.job_id)
    listing = scan(Path(spec.data))
    verify_folder(spec, listing, inputs)
    items = shard_slice(listing_items(listing), spec.shards, ctx.shard or 0)
    labels = read_labels_csv(Path(spec.labels)) if spec.labels else None
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="orch-verify") as pool:
        # Hashing the checkpoint (0.2 s for resnet18's 134 MB; hashlib releases the GIL) runs beside
        # the model's load; nothing is predicted before it matches the pinned hash.
        verified = pool.submit(verify_checkpoint, spec, inputs)
        ids, predicted, probs, classes, ran = _predict(ctx, spec, items, listing, verified.result)
        verified.result()  # an empty slice predicts nothing, but its checkpoint is checked all the same
    seconds = time.perf_counter() - started
    if classes:
        _check_classes(listing, labels, classes)
    truth = truth_for(listing, classes, labels)
    correct, labelled = count_correct(ids, predicted, truth)
    part = part_path(ctx.settings.job_dir(_parent_of(ctx)), ctx.shard or 0)
    part.parent.mkdir(parents=True, exist_ok=True)
    files = None
    if spec.names:  # each scored id's file, as a path inside the folder
        by_id = dict(items)
        files = [by_id[i].relative_to(listing.folder).as_posix() for i in ids]
    write_atomic(part, [format_rows(ids, predicted, probs if spec.probs else None, files)])
    return {"part": str(part), "n": len(ids), "correct": correct, "labelled": labelled,
            "seconds": round(seconds, 3), "classes": list(classes), **ran,
            **shard_hits(ids, predicted, truth, classes)}


def _predict(ctx: JobContext, spec: ScoreSpec, items: list[tuple[int, Path]], listing: Listing,
             before_inference: Callable[[], Any]) -> tuple[Any, ...]:
    """(ids, predicted labels, probabilities, classes, what ran) for this shard's (id, file) items."""
    from shared.engine import score

    if not items:  # more shards than images: an empty part keeps the shard arithmetic simple
        return [], [], [], [], {}
    out = score(Path(spec.checkpoint), Path(spec.data), batch_size=spec.batch_size, precision=spec.precision,
                items=items, cache_dir=ctx.settings.cache_dir, listing=listing, before_inference=before_inference,
                on_progress=stops_while_scoring(StepProgress(ctx.lease), ctx.should_stop))
    ran = {k: out[k] for k in ("precision", "int8_agreement", "int8_fallback", "timings") if k in out}
    return out["ids"], out["labels"], out["probs"], out["classes"], ran


def stops_while_scoring(progress: Progress, should_stop: Callable[[], bool]) -> Progress:
    """`progress`, which also ends the shard at the next batch once its worker is stopping: a shard has no
    checkpoint to write, and it scored on through the 10 s grace, then was killed there (the worker's
    stop waited out the grace for work thrown away). Not while decoding: the cache is being written."""
    def told(phase: str, epoch: int | None, done: int, total: int) -> None:
        if phase == "scoring" and done < total and should_stop():
            raise JobCancelled(f"stopped while scoring, {done} of {total} images done")
        progress(phase, epoch, done, total)
    return told


def _check_classes(listing: Any, labels: dict[int, int] | None, classes: list[str]) -> None:
    """The submit-time checks again: the labels may have changed, or the CLI could not load the model."""
    if labels is not None:
        check_label_classes(labels, classes)
    check_folder_classes(listing, classes)


def _assemble_if_last(ctx: JobContext, parent: int, spec: ScoreSpec) -> None:
    """If this shard completed the set, assemble under the parent's lease (a sibling may have it)."""
    # the worker that holds this shard, by the name `orch status` shows for it (not the machine's)
    with ctx.store.session() as s:
        worker = s.scalar(select(Job.worker_host).where(Job.id == ctx.job_id)) or socket.gethostname()
    owner = f"{worker} via shard job {ctx.job_id}"
    lease = protocol.take_assembly(ctx.store, ctx.lease, parent, owner, ctx.settings.lease_ttl)
    if lease is None:
        return
    try:
        protocol.assemble_run(lease, spec, ctx.source_job_id)
    except StaleLease:
        return  # the parent's lease expired mid-assembly: its new holder finishes it


def _run_parent(ctx: JobContext) -> dict[str, Any]:
    """The parent as a task: sent by the sweeper when every shard succeeded but none assembled."""
    return protocol.assemble_run(ctx.lease, parse(ScoreSpec, ctx.spec), ctx.source_job_id)
