"""No lost message, on any broker: send what the outbox owes, and re-send what did not arrive.

A state change that owes a message records an outbox row in its own transaction
(shared/store/outbox.py). Whoever made it sends right after the commit (`deliver`); the `Relay`
thread in every worker covers the rest:
- a row nobody sent (the CLI was killed between its commit and its send, the broker was down):
  sent once it is UNSENT_GRACE_S old;
- a sent row whose message is gone (a worker took it and died before leasing the job, a broker
  restart without persistence): the broker's queue holds fewer messages than there are queued jobs
  with a sent row, for SUSPECT_S in a row. Queues serve by priority, then first in, first out, so the
  missing messages are the first in that order; those are re-sent. The count is kombu's (Redis LLEN, files in the queue
  folder); no message is read;
- and, as a backstop for what the count cannot see, a row whose job is still queued
  RESEND_AFTER_S after its last send, then twice that, and so on.
A message is confirmed when its job leaves `queued`. A duplicate is harmless (the lease lets one
delivery run a job), and these rules keep them rare.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from celery import Celery
from kombu.connection import Connection

from shared.celery_app import queue_size, send_job
from shared.config import redact
from shared.store import Store, outbox
from shared.store.outbox import Owed

log = logging.getLogger("orch.delivery")
RELAY_INTERVAL_S = 1.0
UNSENT_GRACE_S = 3.0  # the sender itself sends within milliseconds of its commit; after this, the relay does
SUSPECT_S = 5.0  # missing from the broker this long (skips the moment between a worker's take and its lease)
# the backstop: the count finds a lost message in seconds, while a job may rightly wait its turn for hours
RESEND_AFTER_S = 600.0
RESEND_MAX_S = 3600.0
PRUNE_EVERY = 600  # ticks


def send_message(app: Celery, owed: Owed) -> None:
    """The message itself: task by name, the job id as its only argument, the label for monitors."""
    send_job(app, owed.job_id, owed.kind, owed.queue, owed.label, owed.priority)


def deliver(app: Celery, store: Store, owed: Sequence[Owed]) -> None:
    """Send rows just committed and mark them sent; a broker error is raised after marking what went."""
    sent: list[Owed] = []
    try:
        for row in owed:
            send_message(app, row)
            sent.append(row)
    finally:
        outbox.mark_sent(store, sent)


def deliver_or_defer(app: Celery, store: Store, owed: Sequence[Owed]) -> str | None:
    """`deliver`, but a broker error is returned as one line: the jobs are recorded, a relay sends them."""
    try:
        deliver(app, store, owed)
    except Exception as exc:  # kombu/redis errors vary by transport
        return redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return None


def deliver_unsent(app: Celery, store: Store, job_ids: Sequence[int]) -> None:
    """A worker's send after its own state change (release, requeue, assembly)."""
    error = deliver_or_defer(app, store, outbox.unsent(store, job_ids))
    if error:
        log.warning("jobs %s: broker unavailable (%s); the relay will send their messages", list(job_ids), error)


class Relay(threading.Thread):
    """Sends and re-sends the outbox's messages; one per worker, all of them safe to run together."""

    def __init__(self, app: Celery, store: Store, interval: float = RELAY_INTERVAL_S):
        super().__init__(name="orch-relay", daemon=True)
        self.app, self.store, self.interval = app, store, interval
        self.stopping = threading.Event()
        self.suspect_since: dict[tuple[int, int], float] = {}  # (row id, sends) -> first found missing
        self._conn: Connection | None = None
        self._ticks = 0
        self._last_error: str | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
                self._last_error = None
            except Exception as exc:  # the relay must never take the worker down
                line = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                if line != self._last_error:  # once per outage, not once a second
                    log.warning("relay: %s (trying again every %.0f s)", line, self.interval)
                self._last_error = line
                self._drop_connection()
            self.stopping.wait(self.interval)
        self._drop_connection()

    def tick(self, now: float | None = None) -> int:
        """One pass: confirm, then send what is due. Returns how many messages were sent."""
        now = time.time() if now is None else now
        self._ticks += 1
        if self._ticks % PRUNE_EVERY == 1:
            outbox.prune(self.store)
        pending = outbox.open_rows(self.store)
        due = {row.id: row for row in never_sent(pending, now) + self.lost(pending, now) + overdue(pending, now)}
        return self.send(sorted(due.values(), key=lambda row: row.id))

    def send(self, rows: Sequence[Owed]) -> int:
        sent = 0
        for row in rows:
            if not outbox.claim(self.store, row):
                continue  # another relay sent it, or its job moved on
            try:
                send_message(self.app, row)
            except Exception as exc:
                outbox.unclaim(self.store, row, redact(str(exc).splitlines()[0] if str(exc) else repr(exc)))
                raise  # the broker is down: the next tick tries again
            log.info("job %s: %s its message (%s)", row.job_id, "re-sent" if row.sends else "sent", row.kind)
            sent += 1
        return sent

    def lost(self, pending: Sequence[Owed], now: float) -> list[Owed]:
        """Sent rows whose messages have been missing from their queue for SUSPECT_S."""
        missing: list[Owed] = []
        for queue in sorted({row.queue for row in pending}):
            sent = sorted((r for r in pending if r.queue == queue and r.sent_at is not None),
                          key=lambda r: (r.priority, r.sent_at or 0.0, r.id))  # the order of consumption
            if sent:
                missing += sent[:max(0, len(sent) - self.queue_size(queue))]
        # keyed by the send too: after a re-send (by any relay) a row's suspicion starts again, or a
        # worker's take of another message a moment later would make this one look missing at once
        self.suspect_since = {(row.id, row.sends): self.suspect_since.get((row.id, row.sends), now)
                              for row in missing}
        return [row for row in missing if now - self.suspect_since[(row.id, row.sends)] >= SUSPECT_S]

    def queue_size(self, queue: str) -> int:
        if self._conn is None:
            self._conn = self.app.connection_for_write()
        return queue_size(self._conn, queue)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()  # type: ignore[no-untyped-call]
            except Exception:  # already broken: nothing to close
                pass
            self._conn = None


def never_sent(pending: Sequence[Owed], now: float) -> list[Owed]:
    return [row for row in pending if row.sent_at is None and now - row.created_at >= UNSENT_GRACE_S]


def overdue(pending: Sequence[Owed], now: float) -> list[Owed]:
    """The backstop: still queued long after the last send, with the wait doubling per send."""
    return [row for row in pending if row.sent_at is not None
            and now - row.sent_at >= min(RESEND_AFTER_S * 2 ** max(row.sends - 1, 0), RESEND_MAX_S)]
