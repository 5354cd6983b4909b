"""Build the worker's Celery app: the shared configuration plus one thin task per job kind."""
from __future__ import annotations

import logging
import os
import signal
import socket
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore
from celery.signals import worker_shutting_down

from shared.celery_app import TASK_NAMES, make_celery, send_job
from shared.config import DEFAULT_QUEUE, PRIORITY_NEW, PRIORITY_RETURNED, Settings, redact
from shared.delivery import deliver_unsent
from shared.errors import StoreUnavailable
from shared.store import JobStatus, Outcome, open_store
from shared.store import reads as store_reads
from worker.supervisor import Supervisor
from worker.warm import WarmPool

log = logging.getLogger("orch.worker")


def create_app(settings: Settings, threads: int | None = None, *, warm: bool = True,
               name: str | None = None) -> tuple[Celery, Supervisor]:
    """The worker's app; `threads` is each job's torch thread count (None: every CPU it may use).
    `name`, the Celery node name (orch-PID@HOST, or --name), is what `orch status` shows as a job's
    worker: the name Flower and the worker's log show (HOST:PID where there is none)."""
    app = make_celery(settings)
    store = open_store(settings)
    supervisor = Supervisor(
        settings=settings,
        store=store,
        owner=name or f"{socket.gethostname()}:{os.getpid()}",
        # the message a release owes is in the outbox already: send it now (the relay covers a failure)
        resend=lambda job_id, _kind, _queue: deliver_unsent(app, store, [job_id]),
        children=WarmPool(str(settings.home), threads, warm=warm),
        stop_worker=lambda: os.kill(os.getpid(), signal.SIGTERM),  # Celery's warm stop: this task returns first
    )
    for name in TASK_NAMES.values():
        _register(app, name, supervisor)

    def on_shutdown(**_: Any) -> None:
        supervisor.shutdown.set()
        supervisor.children.close()

    worker_shutting_down.connect(on_shutdown, weak=False)
    return app, supervisor


# What Celery's log and Flower show as the task's result where the job did not end here: Celery says
# "succeeded" for every task that returns, and "succeeded: 'shutdown'" read as if the job had
TASK_RESULTS = {
    Outcome.shutdown: "given back: this worker is stopping; the job is requeued and resumes from its checkpoint",
    Outcome.fenced: "given back: this worker could not reach the store; the job is requeued",
    Outcome.store_lost: "given back: the job's process could not reach the store; the job is requeued",
    Outcome.outdated: "given back: this worker's orch cannot use the store's schema; it stops",
    Outcome.stale: "not recorded here: another worker took the job over and records its end",
    Outcome.skipped: "not taken: finished, cancelled, or leased by another worker",
}


class JobFailed(Exception):
    """Raised by a task after the store recorded its job as failed, so that Flower's task list shows
    FAILURE with the cause (it showed SUCCESS, the task having returned). Declared as expected
    (`throws`): the worker logs one line, no traceback; the message is acked all the same."""


def _register(app: Celery, name: str, supervisor: Supervisor) -> None:
    kind = next(k for k, task_name in TASK_NAMES.items() if task_name == name)

    def run_job(task: Task, job_id: int) -> str:
        if supervisor.shutdown.is_set():  # Celery ran a message after the stop began: give it back in its place
            return give_back_message(app, task, kind, int(job_id))
        try:
            outcome = supervisor.run(int(job_id))
        except StoreUnavailable as exc:  # only while stopping: otherwise the supervisor waits for the store
            log.warning("job %s: the store did not answer while this worker stopped (%s); the job's lease expires "
                        "and a sweeper requeues it", job_id, redact(str(exc).splitlines()[0]))
            return "not recorded: the store did not answer while this worker stopped; a sweeper requeues the job"
        if outcome == Outcome.cancelled:  # Flower: REVOKED, as for a task revoked before it ran
            task.send_event("task-revoked", terminated=True, signum="SIGTERM", expired=False)
            raise Ignore()
        if outcome in (Outcome.failed, Outcome.transient, Outcome.crashed):
            error = ended_with_error(supervisor, int(job_id))
            if error is not None:
                raise JobFailed(error)
            if outcome == Outcome.crashed:  # this delivery failed; the job went back to the queue
                raise JobFailed(f"job {job_id}'s process died; the job is requeued (orch status {job_id} says why)")
        return TASK_RESULTS.get(outcome, str(outcome))

    run_job.__name__ = run_job.__qualname__ = name.replace(".", "_")
    app.task(name=name, bind=True, acks_late=True, ignore_result=True, throws=(JobFailed,))(run_job)


def give_back_message(app: Celery, task: Task, kind: str, job_id: int) -> str:
    """Send the message of a job this stopping worker will not run back to its queue, at PRIORITY_RETURNED
    (or its own, if that is sooner: a resuming job's); the one taken is then acked. Acked as 'not taken',
    it was gone until the relay's re-send, behind the jobs submitted after it: a worker stop ran them first."""
    delivery = task.request.delivery_info or {}
    queue = str(delivery.get("routing_key") or DEFAULT_QUEUE)
    given = delivery.get("priority")
    priority = min(PRIORITY_NEW if given is None else int(given), PRIORITY_RETURNED)
    try:
        send_job(app, job_id, kind, queue, getattr(task.request, "argsrepr", None), priority)
    except Exception as exc:  # the broker is away: the relay re-sends the message it finds missing
        log.warning("job %s: not taken (this worker is stopping), and its message could not be sent back (%s); "
                    "the relay re-sends it", job_id, redact(str(exc).splitlines()[0] if str(exc) else repr(exc)))
    else:
        log.info("job %s: not taken (this worker is stopping); its message is back in the queue", job_id)
    return "not taken: this worker is stopping; the job's message is back in its queue"


def ended_with_error(supervisor: Supervisor, job_id: int) -> str | None:
    """The recorded cause when the job ended failed (a crash is requeued until ORCH_MAX_ATTEMPTS)."""
    try:
        with supervisor.store.session() as s:
            job = store_reads.job(s, job_id)
            return (job.error or "failed") if job is not None and job.status == JobStatus.failed else None
    except Exception:  # the store is the record and has it: this is only what a monitor shows
        return None
