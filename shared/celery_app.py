"""The Celery app both sides use: the CLI sends tasks by name, the worker registers them.

No torch, no tasks imported here. JSON only, late acks, prefetch 1: a message is acked when
its job ends, so a worker killed mid-job leaves it to be redelivered; the lease in the SQL
store (not the broker) guarantees it never runs twice.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu.connection import Connection
from kombu.exceptions import ChannelError

from shared import broker_fs
from shared.config import DEFAULT_QUEUE, PRIORITY_NEW, Settings

# job kind -> task name: what Flower shows, with the job id as the only argument
TASK_NAMES: dict[str, str] = {"train": "orch.train", "score": "orch.score", "score_shard": "orch.score_shard"}
# The lease sweep, not the broker, recovers a crashed job; the visibility timeout only
# restores a message the sweep could not (and the lease makes that copy a no-op).
REDIS_VISIBILITY_TIMEOUT = 3600


CLIENT_SOCKET_TIMEOUT = 5.0  # the CLI's wait for a Redis answer


def transport_options(settings: Settings, client: bool = False) -> dict[str, Any]:
    """A worker waits up to 30 s for a Redis answer; the CLI (`client`) sends and checks only: a broker
    that accepts connections and never answers (hung, or another service on its port) held `orch submit`
    for ever, where this gives up after a few seconds.

    No retry inside redis-py, for either (`retry_on_timeout` gave every connection one retry, of a
    lost connection too): after a Redis restart the worker's pub/sub read (remote control) reconnected
    within the read and then waited for a reply that never came, with no timeout, holding Celery's
    event loop: the worker took no job again and logged nothing (a CI failure, reproduced by pausing
    the worker across the restart). A lost connection must reach Celery, which reconnects everything;
    a pooled connection that went stale is reconnected by the pool when it is next taken."""
    if settings.embedded_broker:
        return broker_fs.transport_options(settings)
    return {
        "visibility_timeout": REDIS_VISIBILITY_TIMEOUT,
        "unacked_restore_interval": 10,
        "socket_connect_timeout": 5,
        "socket_timeout": CLIENT_SOCKET_TIMEOUT if client else 30,
        "retry_on_timeout": False,
    }


def make_celery(settings: Settings, client: bool = False) -> Celery:
    """The Celery app of a worker, or of the CLI (`client`: see transport_options)."""
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
        broker_transport=broker_fs.TRANSPORT_PATH if settings.embedded_broker else None,
        broker_transport_options=transport_options(settings, client),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker restart
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def send_job(app: Celery, job_id: int, kind: str, queue: str, label: str | None = None,
             priority: int = PRIORITY_NEW) -> None:
    """Send the task for a job by name: the message carries the job id only.

    `label` (shared.task_label) is what Flower shows in place of the arguments; the worker ignores it.
    """
    app.send_task(TASK_NAMES[kind], args=[job_id], queue=queue, argsrepr=label, priority=priority,
                  headers={broker_fs.JOB_HEADER: job_id},  # the embedded broker's janitor reads it (broker_fs)
                  retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5})


def check_broker(app: Celery, timeout: float = 3.0, queues: Sequence[str] = ()) -> None:
    """Raise if the broker does not answer, before anything is written to the store.

    It also readies the send that follows, so that a job's message leaves within milliseconds of
    its row's commit (the dispatch latency counts from the insert): the connection is the producer
    pool's, kept open for the send, `queues` are declared on it (kombu remembers that per
    connection), and Celery's result-backend lookup (entry points: 50-100 ms on a first send) is
    done now. Together these were 100 ms between the commit and the send on Redis.
    """
    app.backend  # noqa: B018  # the lookup is the point: send_task would do it after the commit
    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(max_retries=1, timeout=timeout)
        for queue in queues:
            producer.maybe_declare(app.amqp.queues[queue])


def queue_size(conn: Connection, queue: str) -> int:
    """How many messages wait in `queue` (not those a worker took and has not acked), on any broker.

    kombu's own count (a Redis LLEN, a count of the queue folder's files): the relay compares it with
    the jobs that should have a message there, without reading any message.
    """
    try:
        declared = conn.default_channel.queue_declare(queue=queue, passive=True)  # type: ignore[no-untyped-call]
        return int(declared.message_count)
    except ChannelError:  # Redis deletes an empty list: no such queue means nothing waits in it
        return 0
