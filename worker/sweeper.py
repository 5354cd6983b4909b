"""Background upkeep in every worker: requeue jobs whose lease expired, prune the embedded broker."""
from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shared.broker_fs import is_temp_message
from shared.config import Settings, redact
from shared.queue import TASK_NAMES, broker_folders
from shared.scoring.protocol import settle_parents
from shared.store import JobStatus, Lease, Store
from shared.store import jobs as store_jobs

log = logging.getLogger("orch.worker")
STALE_MESSAGE_S = 300.0  # an event or reply nobody read for this long belongs to a monitor that went away
LOST_MESSAGE_S = 30.0  # a queued job whose task message is nowhere in the queue folder this long is re-sent


class Sweeper(threading.Thread):
    def __init__(self, settings: Settings, store: Store, resend: Callable[[int, str, str], None],
                 owner: str = "sweeper"):
        super().__init__(name="orch-sweeper", daemon=True)
        self.settings, self.store, self.resend, self.owner = settings, store, resend, owner
        self.interval = min(10.0, max(1.0, settings.lease_ttl / 3))
        self.stopping = threading.Event()
        self.missing_since: dict[int, float] = {}  # job id -> when a sweep first found no message for it

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sweep_once()
            self.stopping.wait(self.interval)

    def sweep_once(self) -> None:
        try:
            self.take_expired()
            for parent in settle_parents(self.store):
                log.warning("score job %s: every shard ended; sent for assembly", parent.job_id)
                self.resend(parent.job_id, parent.kind, parent.queue)
            if self.settings.embedded_broker:
                self.resend_lost_messages()
                prune_broker(self.settings)
        except Exception as exc:  # a sweep must never take the worker down
            log.warning("sweep failed: %s", redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))

    def take_expired(self) -> None:
        """Jobs whose worker stopped renewing its lease: requeued and re-sent, or ended (cancelled,
        or failed after ORCH_MAX_ATTEMPTS attempts), under a lease the sweeper takes."""
        settings = self.settings
        for job in Lease.take_expired(self.store, settings.lease_ttl, self.owner, settings.max_attempts):
            log.warning("job %s: lease of %s expired after attempt %d; %s", job.job_id, job.holder,
                        job.attempts, "requeued" if job.outcome == JobStatus.queued else job.outcome)
            if job.outcome == JobStatus.queued:
                self.resend(job.job_id, job.kind, job.queue)

    def resend_lost_messages(self) -> None:
        """Re-send queued jobs whose message has been gone from the embedded broker for LOST_MESSAGE_S.

        A worker killed between taking a message and leasing its job (the filesystem transport
        keeps unacked messages in the worker's memory) would otherwise leave the job queued
        forever. Waiting out LOST_MESSAGE_S skips the moment between a take and its lease; a
        copy sent anyway is harmless, since the lease lets only one delivery run a job.
        """
        waiting = {job.id: job for job in store_jobs.awaiting_delivery(self.store)}
        present = job_ids_in_broker(self.settings) if waiting else set()
        now = time.monotonic()
        self.missing_since = {i: self.missing_since.get(i, now) for i in waiting if i not in present}
        for job_id, since in self.missing_since.items():
            if now - since >= LOST_MESSAGE_S:
                job = waiting[job_id]
                log.warning("job %s: queued, but no task message for it in the broker for %.0f s; re-sent",
                            job_id, now - since)
                self.resend(job.id, job.kind, job.queue)
                self.missing_since[job_id] = now


def job_ids_in_broker(settings: Settings) -> set[int]:
    """Job ids of the orch tasks waiting in the embedded broker's queue folder."""
    ids: set[int] = set()
    for path in broker_folders(settings)["queue"].glob("*.msg"):
        try:
            message = json.loads(path.read_bytes())
            if message["headers"].get("task") in TASK_NAMES.values():
                args = json.loads(base64.b64decode(message["body"]))[0]  # Celery's [args, kwargs, embed]
                ids.add(int(args[0]))
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue  # taken meanwhile, or not an orch task
    return ids


def is_monitor_queue(queue: str) -> bool:
    """Event queues (Flower, `celery events`) and remote-control queues: never a job's queue."""
    return queue.startswith("celeryev.") or queue.endswith(".pidbox")


def prune_broker(settings: Settings, max_age: float = STALE_MESSAGE_S) -> int:
    """Delete processed messages and unread fan-out messages older than max_age; unbind their queues.

    kombu's filesystem transport never expires anything: without this, every Flower or
    `celery events` session that ended leaves a queue that collects worker events forever.
    """
    folders = broker_folders(settings)
    now = time.time()
    removed = _remove_older(folders["processed"].iterdir(), now - 60.0)
    stale_queues: set[str] = set()
    for path in folders["queue"].iterdir():
        if is_temp_message(path.name):  # a sender died between writing and renaming it
            removed += _remove_older([path], now - max_age)
            continue
        queue = path.name.partition(".")[2].removesuffix(".msg")
        if not is_monitor_queue(queue) or _age(path, now) < max_age:
            continue
        stale_queues.add(queue)
        removed += _remove_older([path], now - max_age)
    if stale_queues:
        _unbind(folders["control"], stale_queues)
    return removed


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _remove_older(paths, cutoff: float) -> int:
    removed = 0
    for path in paths:
        try:
            if path.stat().st_mtime < cutoff:
                os.remove(path)
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def _unbind(control: Path, queues: set[str]) -> None:
    import fcntl

    for table in control.glob("*.exchange"):
        with table.open("rb+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # the same lock kombu takes on these files
            rows = json.loads(handle.read() or b"[]")
            kept = [row for row in rows if row[2] not in queues]
            if len(kept) != len(rows):
                handle.seek(0)
                handle.write(json.dumps(kept).encode())
                handle.truncate()
