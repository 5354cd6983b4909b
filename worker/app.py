"""Build the worker's Celery app: the shared configuration plus one thin task per job kind."""
from __future__ import annotations

import os
import socket
from typing import Any

from celery import Celery
from celery.signals import worker_shutting_down

from shared.celery_app import TASK_NAMES, make_celery
from shared.config import Settings
from shared.delivery import deliver_unsent
from shared.store import open_store
from worker.supervisor import Supervisor
from worker.warm import WarmPool


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
    )
    for name in TASK_NAMES.values():
        _register(app, name, supervisor)

    def on_shutdown(**_: Any) -> None:
        supervisor.shutdown.set()
        supervisor.children.close()

    worker_shutting_down.connect(on_shutdown, weak=False)
    return app, supervisor


def _register(app: Celery, name: str, supervisor: Supervisor) -> None:
    def run_job(job_id: int) -> str:
        return supervisor.run(int(job_id))

    run_job.__name__ = run_job.__qualname__ = name.replace(".", "_")
    app.task(name=name, acks_late=True, ignore_result=True)(run_job)
