"""`--wait`: follow jobs in the store until they all end, printing each change of state."""
from __future__ import annotations

import json
import time
from typing import Any

import click

from orchestrator.context import CliState
from shared.spec import SPEC_FOR_KIND, TrainSpec, read_stored
from shared.store import reads
from shared.store.clock import read_now
from shared.store.jobs import is_finished

POLL_S = 1.0
NOT_TAKEN_S = 20.0  # a followed job still queued this long gets one line on why (no worker, or busy ones)
# then a line again where that changes (other jobs run now, fewer wait ahead), at most this often: behind
# 30 queued jobs, --wait said why once and then nothing for 13 minutes
REHINT_S = 120.0


def job_states(obj: CliState, job_ids: list[int]) -> dict[int, dict[str, Any]]:
    """id -> status, last epoch and its val accuracy, error: one query each for jobs and epochs."""
    with obj.store.session() as s:
        jobs = reads.jobs_by_id(s, job_ids)
        last = reads.last_epochs(s, job_ids)
        now = read_now(s)  # the clock heartbeats are written by
    states = {}
    for job in jobs:
        epoch, val_acc = last.get(job.id, (None, None))
        spec = read_stored(SPEC_FOR_KIND[job.kind], job.spec)
        running = job.status == "running"
        states[job.id] = {"status": job.status, "epoch": epoch,
                          "epochs": spec.epochs if isinstance(spec, TrainSpec) else None,
                          "val_acc": val_acc, "error": job.error, "kind": job.kind, "queue": job.queue,
                          # in steps of 5%: --wait prints a line per change, not one per write
                          "inside": inside_epoch(job.progress, epoch, step=5) if running else None,
                          # a killed worker's job read "running" until another finished it, 42 s unexplained
                          "silent": running and job.heartbeat_at is not None
                          and now - job.heartbeat_at > reads.lease_of(job.lease_ttl, obj.settings.lease_ttl),
                          "attempt": job.attempts if running else None, "worker": job.worker_host}
    return states


def current_progress(progress: dict[str, Any] | None, last_epoch: int | None) -> dict[str, Any] | None:
    """A running job's place (jobs.progress, worker/progress.py): as written, for its writer clears it
    at the end of each pass and a new attempt starts with none. An epoch up to the one after the last
    recorded, so an epoch trained again (its checkpoint was lost: `trained_again`) shows too (it was
    hidden for minutes while epochs 1 and 2 trained again under "2/8"). None before the first write."""
    if not progress or not progress.get("total"):
        return None
    if progress.get("epoch") is not None and progress["epoch"] > (last_epoch or 0) + 1:
        return None
    return progress


def trained_again(progress: dict[str, Any], last_epoch: int | None) -> bool:
    """The place is in an epoch already recorded: a resume from an earlier checkpoint trains it again."""
    return progress.get("epoch") is not None and progress["epoch"] <= (last_epoch or 0)


def share(progress: dict[str, Any]) -> float:
    """The per cent of its pass done, of `current_progress`."""
    return 100 * progress["done"] / progress["total"]


def inside_epoch(progress: dict[str, Any] | None, last_epoch: int | None, step: int = 0) -> str | None:
    """'epoch 3: 30%, 85 images/s', 'epoch 3 validation: 30%, ...', 'scoring: 30%, ...' or 'decoding
    images: 30%, ...' (with `step`, the share rounded down to it and no rate), of `current_progress`."""
    progress = current_progress(progress, last_epoch)
    if progress is None:
        return None
    done = share(progress)
    phase = progress.get("phase")
    epoch = f"epoch {progress['epoch']}{' again' if trained_again(progress, last_epoch) else ''}"
    where = {"scoring": "scoring", "decoding": "decoding images", "validation": f"{epoch} validation"}.get(str(phase), epoch)
    if step:
        return f"{where}: {step * int(done // step)}%"
    return f"{where}: {done:.0f}%, {progress['images_per_s']:g} images/s"


def describe_state(job_id: int, state: dict[str, Any]) -> str:
    text = f"job {job_id}: {state['status']}"
    if state["epoch"]:
        text += f"  epoch {state['epoch']}/{state['epochs']}"
        if state["val_acc"] is not None:
            text += f"  val_acc {100 * state['val_acc']:.2f}%"  # as the tables show it
    if state.get("silent"):  # the sweeper's takeover, or its attempt's end, is the next line
        text += f"  (its worker {state['worker']} is not answering: a live worker's sweeper takes the job over)"
    elif state.get("inside"):
        text += f"  ({state['inside']})"
    if (state.get("attempt") or 0) > 1 and not state.get("silent"):  # taken over, or retried: where it runs now
        text += f"  (attempt {state['attempt']}, on {state['worker']})"
    if state["error"] and is_finished(state["status"]) and state["status"] != "succeeded":
        text += f"  ({state['error']})"
    return text


def wait_for(obj: CliState, job_ids: list[int], poll: float = POLL_S, summary: bool = True,
             named: list[int] | None = None, noun: str = "job", started: float | None = None) -> bool:
    """Block until every job has ended; True if all succeeded. Ctrl-C stops waiting, not the jobs.
    `summary`: end with the 'N of M jobs succeeded' line (`noun`: "shard" for a scoring run's).
    `named`: the jobs a Ctrl-C names (a scoring run's parent, not the shards it waits on). `started`:
    the time.monotonic() the lines count from (a second wait goes on from the first's)."""
    shown: dict[int, str] = {}
    started = time.monotonic() if started is None else started
    # asked at most every REHINT_S, the line said again only where it changed: an unchanged line was asked
    # for at every poll past the first REHINT_S, and asking costs a second of waiting for the workers' answer
    hint, asked_at = "", -REHINT_S
    try:
        while True:
            states = job_states(obj, job_ids)
            for job_id in job_ids:
                line = describe_state(job_id, states[job_id])
                if shown.get(job_id) != line:
                    click.echo(f"[{time.monotonic() - started:6.0f}s] {line}", err=True)
                    shown[job_id] = line
            waited = time.monotonic() - started
            if waited >= max(NOT_TAKEN_S, asked_at + REHINT_S) and all(st["status"] == "queued" for st in states.values()):
                queues = sorted({str(st["queue"]) for st in states.values()})
                line, asked_at = not_taken_hint(obj, queues, first=min(job_ids)), waited
                if line != hint:
                    click.echo(f"[{waited:6.0f}s] {line}", err=True)
                    hint = line
            if all(is_finished(state["status"]) for state in states.values()):
                failed = [i for i, st in states.items() if st["status"] != "succeeded"]
                done = len(job_ids) - len(failed)
                if summary:
                    plural = "" if len(job_ids) == 1 else "s"
                    click.echo(f"{done} of {len(job_ids)} {noun}{plural} succeeded" + (f"; not: {failed}" if failed else ""),
                               err=True)
                return not failed
            time.sleep(poll)
    except KeyboardInterrupt:  # 130, as a shell reports a Ctrl-C; the jobs named, to follow or stop them
        job_ids = named or job_ids
        if len(job_ids) == 1:
            how = f"`orch status {job_ids[0]}` follows it, `orch cancel {job_ids[0]}` stops it"
        else:
            how = (f"`orch status` follows them (jobs {', '.join(map(str, job_ids))}), `orch cancel ID` or "
                   "`orch cancel --study ID` stops them")
        click.echo(f"stopped waiting; the job{'s go' if len(job_ids) > 1 else ' goes'} on: {how}", err=True)
        raise SystemExit(130) from None


def not_taken_hint(obj: CliState, queues: list[str] | None = None, first: int | None = None) -> str:
    """Why nothing started: no running worker reads its queue (asked over the broker), every live worker
    busy (which jobs, and how many queued jobs wait ahead of job `first`), or none running a job at all
    (a job waits in the queue for one, silently); a queue of another name than the default needs a
    worker that reads it."""
    from orchestrator.workers import unread_queues
    from shared.config import DEFAULT_QUEUE

    unread = unread_queues(obj, queues or [DEFAULT_QUEUE])
    if unread:  # the busy workers read other queues: "it starts when one is free" was false
        return f"still queued: {unread[1]} (Ctrl-C here stops waiting, not the jobs)"
    with obj.store.session() as s:
        running = reads.running_jobs(s, obj.settings.lease_ttl)
        ahead = reads.queued_ahead(s, first, queues or [DEFAULT_QUEUE]) if first is not None and running else 0
    other = [q for q in queues or [] if q != DEFAULT_QUEUE]
    reads_it = (f"; the queue is {', '.join(other)}: only a worker started with `orch worker --queues "
                f"{','.join(other)}` takes it") if other else ""
    if running:
        busy = ", ".join(f"job {job_id}" + (f" on {worker}" if worker else "") for job_id, worker in running)
        queue = f", and {ahead} queued job{'s' * (ahead != 1)} submitted before it" if ahead else ""
        return f"still queued: the workers are busy ({busy}){queue}; it starts when one is free{reads_it}"
    return ("still queued and no worker is running a job: is a worker running? `orch worker` starts one (queued "
            f"jobs wait for it; Ctrl-C here stops waiting, not the jobs){reads_it}")


def report_queued(obj: CliState, job_ids: list[int], payload: dict[str, Any], *, wait: bool, as_json: bool,
                  also_follow: list[int] | None = None) -> None:
    """Print what was queued; with --wait follow it, and the jobs of `also_follow` (a study's cells
    submitted before and still running or done), and exit 1 unless every one of them succeeded."""
    if as_json:
        click.echo(json.dumps(payload))
    else:
        for job_id in job_ids:
            click.echo(f"queued job {job_id}")
    followed = sorted({*job_ids, *(also_follow or [])})
    if wait and followed and not wait_for(obj, followed):
        raise SystemExit(1)
