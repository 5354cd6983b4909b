"""Which queues the running workers read, asked over the broker. The store knows a worker only by the
job it runs: a job sent to a queue no worker reads (`--queue typo`, or the only worker of `big`
stopped) waited in silence, and `--wait` said "it starts when one is free" of workers that never take it."""
from __future__ import annotations

from collections.abc import Iterable

from orchestrator.context import CliState
from shared.config import DEFAULT_QUEUE

# how long the workers are given to answer (`orch worker --name`'s ping too): one answered in 0.05-0.11 s,
# busy or not (threads pool); silence costs this, once
ASK_S = 1.0


def queues_read(obj: CliState) -> dict[str, list[str]] | None:
    """Worker node -> the queues it reads, of those that answered within ASK_S; None when the broker
    did not answer (or cannot be written, as a read-only home's): then nothing is known, nor said."""
    try:
        with obj.celery.connection_for_write() as conn:
            # no retries: a Redis that refused added 6.5 s to `orch status`, which needs no broker
            conn.ensure_connection(max_retries=0, timeout=ASK_S)
            replies = obj.celery.control.inspect(timeout=ASK_S, connection=conn).active_queues() or {}
    except Exception:  # kombu's, redis-py's or the file system's: a hint never fails the command giving it
        return None
    return {node: sorted(str(queue["name"]) for queue in queues) for node, queues in replies.items()}


def unread_queues(obj: CliState, queues: Iterable[str]) -> tuple[list[str], str] | None:
    """Those of `queues` that no running worker reads, and a line saying so with what the workers that
    answered read; None when every one is read, or the broker did not answer."""
    read = queues_read(obj)
    if read is None:
        return None
    unread = sorted(set(queues) - {queue for names in read.values() for queue in names})
    if not unread:
        return None
    answered = "; ".join(f"{node} reads {', '.join(names)}" for node, names in sorted(read.items()))
    plural = "s" if len(unread) > 1 else ""
    start = "`orch worker`" if unread == [DEFAULT_QUEUE] else f"`orch worker --queues {','.join(unread)}`"
    return unread, (f"no running worker reads queue{plural} {', '.join(unread)} ({answered or 'no worker answered'}): "
                    f"{'their' if plural else 'its'} jobs wait until a worker started with {start} takes them")
