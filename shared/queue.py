"""The Celery app both sides use: the CLI sends tasks by name, the worker registers them.

No torch, no tasks imported here. JSON only, late acks, prefetch 1: a message is acked when
its job ends, so a worker killed mid-job leaves it to be redelivered; the lease in the SQL
store (not the broker) guarantees it never runs twice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery

from shared.broker_fs import TRANSPORT_PATH
from shared.config import DEFAULT_QUEUE, Settings

# job kind -> task name: what Flower shows, with the job id as the only argument
TASK_NAMES: dict[str, str] = {"train": "orch.train", "score": "orch.score", "score_shard": "orch.score_shard"}
# The lease sweep, not the broker, recovers a crashed job; the visibility timeout only
# restores a message the sweep could not (and the lease makes that copy a no-op).
REDIS_VISIBILITY_TIMEOUT = 3600


def broker_folders(settings: Settings) -> dict[str, Path]:
    root = settings.broker_folder
    return {"queue": root / "queue", "processed": root / "processed", "control": root / "control"}


def transport_options(settings: Settings) -> dict[str, Any]:
    if settings.embedded_broker:
        folders = broker_folders(settings)
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            # processed files are renamed inside the broker folder (one filesystem, so the
            # rename is atomic and two workers cannot both take one message); the janitor
            # deletes them.
            "store_processed": True,
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "polling_interval": 0.2,
        }
    return {
        "visibility_timeout": REDIS_VISIBILITY_TIMEOUT,
        "unacked_restore_interval": 10,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "retry_on_timeout": True,
    }


def make_celery(settings: Settings) -> Celery:
    app = Celery("orch", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,  # the SQL store is the record, not a result backend
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        task_default_queue=DEFAULT_QUEUE,
        # the embedded broker: kombu's filesystem transport with atomic sends (see broker_fs)
        broker_transport=TRANSPORT_PATH if settings.embedded_broker else None,
        broker_transport_options=transport_options(settings),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker restart
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def send_job(app: Celery, job_id: int, kind: str, queue: str, label: str | None = None) -> None:
    """Send the task for a job by name: the message carries the job id only.

    `label` (shared.task_label) is what Flower shows in place of the arguments; the worker ignores it.
    """
    app.send_task(TASK_NAMES[kind], args=[job_id], queue=queue, argsrepr=label,
                  retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})


def check_broker(app: Celery, timeout: float = 3.0) -> None:
    """Raise if the broker does not answer, before anything is written to the store."""
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
