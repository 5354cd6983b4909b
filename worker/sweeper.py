"""Background upkeep in every worker: requeue jobs whose lease expired, send score jobs for assembly,
prune the embedded broker. Messages those changes owe are in the outbox; the relay re-sends lost ones."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from shared.broker_fs import prune_broker
from shared.config import Settings, redact
from shared.store import Store
from shared.store import jobs as store_jobs

log = logging.getLogger("orch.worker")


class Sweeper(threading.Thread):
    def __init__(self, settings: Settings, store: Store, resend: Callable[[int, str, str], None]):
        super().__init__(name="orch-sweeper", daemon=True)
        self.settings, self.store, self.resend = settings, store, resend
        self.interval = min(10.0, max(1.0, settings.lease_ttl / 3))
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sweep_once()
            self.stopping.wait(self.interval)

    def sweep_once(self) -> None:
        try:
            for job in store_jobs.requeue_expired(self.store, self.settings.lease_ttl):
                log.warning("job %s: lease of %s expired; requeued (attempt %d next)",
                            job.id, job.worker_host, job.attempts + 1)
                self.resend(job.id, job.kind, job.queue)
            for parent in store_jobs.settle_score_parents(self.store):
                log.warning("score job %s: every shard ended; sent for assembly", parent.id)
                self.resend(parent.id, parent.kind, parent.queue)
            if self.settings.embedded_broker:
                prune_broker(self.settings)
        except Exception as exc:  # a sweep must never take the worker down
            log.warning("sweep failed: %s", redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
