"""Build the worker's Celery app: the shared configuration plus one thin task per job kind."""
from __future__ import annotations

import os
import socket
from typing import Any

from celery import Celery
from celery.signals import worker_shutting_down

from shared.broker_errors import broker_boundary
from shared.config import Settings
from shared.queue import TASK_NAMES, make_celery, send_job
from shared.store import Store, open_store
from shared.task_label import label_for
from worker.supervisor import Supervisor
from worker.warm import WarmPool


def create_app(settings: Settings, threads: int | None = None, *, warm: bool = True) -> tuple[Celery, Supervisor]:
    """The worker's app; `threads` is each job's torch thread count (None: every CPU it may use)."""
    app = make_celery(settings)
    store = open_store(settings)
    supervisor = Supervisor(
        settings=settings,
        store=store,
        owner=f"{socket.gethostname()}:{os.getpid()}",
        resend=lambda job_id, kind, queue: resend(app, store, job_id, kind, queue),
        children=WarmPool(str(settings.home), threads, warm=warm),
    )
    for name in TASK_NAMES.values():
        _register(app, name, supervisor)

    def on_shutdown(**_: Any) -> None:
        supervisor.shutdown.set()
        supervisor.children.close()

    worker_shutting_down.connect(on_shutdown, weak=False)
    return app, supervisor


def resend(app: Celery, store: Store, job_id: int, kind: str, queue: str) -> None:
    with broker_boundary():
        send_job(app, job_id, kind, queue, label_for(store, job_id))


def _register(app: Celery, name: str, supervisor: Supervisor) -> None:
    def run_job(job_id: int) -> str:
        return supervisor.run(int(job_id))

    run_job.__name__ = run_job.__qualname__ = name.replace(".", "_")
    app.task(name=name, acks_late=True, ignore_result=True)(run_job)
