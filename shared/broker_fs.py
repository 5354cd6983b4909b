"""Everything about the embedded broker's files: kombu's filesystem transport made safe, its folders
and options, and the janitor that keeps them from growing.

Atomic sends: kombu's own `_put` creates `<ms>_<uuid>.<queue>.msg` in the queue folder and only then
writes the payload. A worker polling in between renames the still-empty file away, fails to parse it
and the message is gone: the job stays `queued` forever (seen in CI, reproduced 35 times in 3000
sends). Here the payload goes to a hidden temp file in the same folder, which no queue matches, and is
renamed into place: one filesystem, so a consumer sees all of it or nothing.

Nothing here reads a message's content: which jobs are owed a message is the store's outbox
(shared/delivery.py), not a scan of these folders. A message's file name carries its job's id, for
the janitor to drop the messages of jobs that ended without them.
"""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

from shared.atomic import atomic_path, is_temp_name
from shared.config import Settings
from shared.errors import ConfigError

# How often a worker looks for a new message (a stat of the queue folder; a listing when it changed). Measured with /proc
# over 60 s, an idle worker (its relay included) used 0.53% of a core at 0.05 s, 0.38% at 0.1 s and
# 0.25% at 0.2 s; a submitted job waits 25 ms for the poll on average instead of 100 ms.
POLLING_INTERVAL_S = 0.05
STALE_MESSAGE_S = 300.0  # an event or reply nobody read for this long belongs to a monitor that went away
PROCESSED_KEEP_S = 60.0  # a taken message's file is kept this long (kombu renames it; nobody reads it)
RELIST_S = 1.0  # a queue folder is listed at least this often, changed or not (Channel._listing)
SAME_TICK_NS = 100_000_000  # a listing made this soon after the folder's change is not kept (coarse mtime ticks)
FINISHED_MESSAGE_S = 60.0  # a message whose job ended is dropped once this old (it is never needed)


def is_temp_message(name: str) -> bool:
    """A message still being written (atomic_path's temp name: kombu matches only
    `name.partition('.')[2] == '<queue>.msg'`, which a leading dot never does)."""
    return is_temp_name(name)


@dataclass
class FolderListing:
    changed_ns: int  # the folder's mtime, read before it was listed
    listed_ns: int  # when it was listed, on the wall clock (as mtimes are)
    listed_at: float  # and on the monotonic one: a wall clock set back cannot stretch the once-a-second listing
    names: list[str]
    by_queue: dict[str, list[str]] = field(default_factory=dict)

    def of_queue(self, queue: str) -> list[str]:
        """This queue's names in the order they are taken (kombu's rule: the first in sorted order)."""
        if queue not in self.by_queue:
            wanted = f"{queue}.msg"
            self.by_queue[queue] = sorted(name for name in self.names if name.partition(".")[2] == wanted)
        return self.by_queue[queue]


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]  # kombu's filesystem one
        # kombu's consumer takes the first name in sorted order: priority (one digit, the lower first,
        # as on Redis), then time of sending; the name is only made visible once the file is complete.
        # The time is in nanoseconds: a study's cells are sent within a millisecond, and a millisecond
        # stamp left their order to the uuid. It is the wall clock: a monotonic one restarts at a
        # reboot (the messages sent after it would overtake those waiting) and differs per machine.
        # A message put back (kombu restores the unacked ones of a worker that stops) keeps the time of its
        # first send, so it goes back to its place: with a new one, a stop sent the next job behind all the
        # jobs submitted after it.
        # The job's id is in the name too (never read by a consumer): the janitor drops the messages of
        # jobs that ended without one (cancelled while queued) without opening a file.
        final = os.path.join(self.data_folder_out, message_name(payload, queue))
        try:  # the temp file is `.<name>.<pid>.tmp` beside it: hidden, and no queue's name matches it
            with atomic_path(final, fsync=False) as temp:  # no fsync: a message is not a checkpoint
                temp.write_bytes(str_to_bytes(dumps(payload)))  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: str) -> Any:  # type: ignore[override]  # kombu's filesystem one, unannotated
        # kombu's own lists the whole folder, sorts it and pops names from the front until one is this
        # queue's: quadratic in the messages of other queues that sort ahead of it (94 ms a poll with
        # 20,000 of them, 20 polls a second). The same rule, with this queue's names picked out first.
        # A take is a rename into the processed folder (transport_options: store_processed, one filesystem).
        for name in self._listing().of_queue(queue):
            taken = os.path.join(self.processed_folder, name)
            try:  # the rename is the take: of two consumers, one wins and the other tries the next name
                os.rename(os.path.join(self.data_folder_in, name), taken)
            except OSError:
                continue
            try:
                with open(taken, "rb") as handle:
                    payload = handle.read()
            except OSError as exc:
                raise ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            return loads(bytes_to_str(payload))  # type: ignore[no-untyped-call]  # kombu ships them unannotated
        raise Empty()

    def _listing(self) -> FolderListing:
        """The queue folder's names, listed again only when the folder changed, and at least once a second.

        An idle worker polls 20 times a second (POLLING_INTERVAL_S), each poll one listing per queue
        it reads: beside 1,000 messages of a queue it does not read that was 5.4% of a core, taken
        from the job another worker on the machine trains (BENCHMARKS.md). A name added or removed
        changes the folder's mtime; the listing is kept only while the mtime is what it was and was
        already a while old when it was listed (a change in the same clock tick as the listing could
        leave it equal), and the once-a-second listing bounds what a missed change could cost to a
        second's wait: a message is never left behind.
        """
        now_ns, now = time.time_ns(), time.monotonic()
        changed = os.stat(self.data_folder_in).st_mtime_ns  # before the listing: a later change differs
        kept: FolderListing | None = getattr(self, "_kept_listing", None)
        if (kept is not None and kept.changed_ns == changed and now - kept.listed_at < RELIST_S
                and kept.listed_ns - changed > SAME_TICK_NS):
            return kept
        self._kept_listing = FolderListing(changed_ns=changed, listed_ns=now_ns, listed_at=now,
                                           names=os.listdir(self.data_folder_in))
        return self._kept_listing

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        # kombu makes an exchange's table with open("wb") before taking its lock: two processes binding
        # to a new exchange at once (Flower's inspect and a worker's reply, on pidbox's reply exchange)
        # both truncate it, and the second writes its shorter table over the first's at offset 0,
        # leaving trailing bytes ("Extra data" from every later read, Flower's workers list empty for
        # good). The table is made whole here, by a link that fails if it exists; kombu then only
        # ever takes its locked read-and-rewrite path.
        table = self._exchange_file(exchange)  # type: ignore[no-untyped-call]  # kombu ships it unannotated
        self.control_folder.mkdir(exist_ok=True)
        if not table.exists():
            # a name of this call's own: threads of one process (Flower's inspector) sharing a per-process
            # temp name wrote "[]" into the table itself, which the first thread's link had made it
            temp = table.with_name(f".{table.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
            temp.write_bytes(b"[]")
            try:
                os.link(temp, table)  # not a rename: that would replace a table another process filled meanwhile
            except FileExistsError:
                pass
            finally:
                temp.unlink(missing_ok=True)
        super()._queue_bind(exchange, routing_key, pattern, queue)  # type: ignore[no-untyped-call]


SENT_NS = "orch_sent_ns"  # the message property that holds the time of its first send


def first_sent_ns(payload: Any) -> int:
    """The time of the message's first send: its property where it has one, else now, recorded in it."""
    properties = payload.get("properties") if isinstance(payload, dict) else None
    if not isinstance(properties, dict):
        return time.time_ns()
    if not isinstance(properties.get(SENT_NS), int):
        properties[SENT_NS] = time.time_ns()
    return int(properties[SENT_NS])


JOB_HEADER = "orch_job"  # the message header that holds the job's id (shared.celery_app.send_job)
JOB_IN_NAME = re.compile(r"^\d-\d+_j(\d+)_")  # message_name's job id


def message_name(payload: Any, queue: str) -> str:
    """`<rank>-<sent ns>_j<job id>_<uuid>.<queue>.msg` (no `j<id>_` for a message of no job)."""
    job = message_job(payload)
    return f"{message_rank(payload)}-{first_sent_ns(payload):020d}_{'' if job is None else f'j{job}_'}{uuid.uuid4()}.{queue}.msg"


def message_job(payload: Any) -> int | None:
    headers = payload.get("headers") if isinstance(payload, dict) else None
    job = headers.get(JOB_HEADER) if isinstance(headers, dict) else None
    return job if isinstance(job, int) else None


def message_rank(payload: Any) -> int:
    try:
        return min(9, max(0, int(payload["properties"]["priority"])))
    except (KeyError, TypeError, ValueError):
        return 0  # kombu's default priority


class Transport(filesystem.Transport):
    Channel = Channel

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # no hostname: folders have none, and kombu warns "No hostname was supplied. Reverting to
        # default 'localhost'" at every worker start when the transport's defaults name one
        return {"port": self.default_port}


TRANSPORT_PATH = f"{__name__}:Transport"


def broker_folders(settings: Settings) -> dict[str, Path]:
    root = settings.broker_folder
    return {"queue": root / "queue", "processed": root / "processed", "control": root / "control"}


def transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's options for the embedded broker (its folders are made here)."""
    folders = broker_folders(settings)
    for folder in folders.values():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a home on a read-only disk: the setting, not a retry (was a traceback)
            raise ConfigError(f"--home / ORCH_HOME: cannot create the embedded broker's folder {folder} "
                              f"({exc.strerror or type(exc).__name__})") from None
    return {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        # processed files are renamed inside the broker folder (one filesystem, so the rename is
        # atomic and two workers cannot both take one message); prune_broker deletes them.
        "store_processed": True,
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "polling_interval": POLLING_INTERVAL_S,
    }


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
    removed = _remove_older(folders["processed"].iterdir(), now - PROCESSED_KEEP_S)
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


def drop_finished_messages(settings: Settings, finished_among: Callable[[Collection[int]], Collection[int]],
                           min_age: float = FINISHED_MESSAGE_S) -> int:
    """Delete the messages of jobs that ended without taking them; return how many.

    A job cancelled while queued ends with its message still in the queue. A worker of that queue
    takes it and lets it go ("not taken"), but on a queue no worker reads it stayed for good: every
    poll of every worker lists it (they share one folder), and the relay's count of that queue's
    messages (shared/delivery.py) counted it as a queued job's. A retried job has a new message of its
    own, so an older one is never the one it waits for. `finished_among(ids)`: which of the ids have ended.
    """
    folder = broker_folders(settings)["queue"]
    now = time.time()
    by_job: dict[int, list[Path]] = {}
    for path in folder.iterdir():
        found = JOB_IN_NAME.match(path.name)
        if found and _age(path, now) >= min_age:
            by_job.setdefault(int(found.group(1)), []).append(path)
    if not by_job:
        return 0
    stale = [path for job in finished_among(by_job) for path in by_job.get(job, [])]
    for path in stale:
        path.unlink(missing_ok=True)  # a worker that took it meanwhile renamed it away first
    return len(stale)


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _remove_older(paths: Iterable[Path], cutoff: float) -> int:
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
    """Drop the bindings of these queues from kombu's exchange tables, under kombu's own lock."""
    import fcntl

    for table in control.glob("*.exchange"):
        with table.open("rb+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            rows = json.loads(handle.read() or b"[]")
            kept = [row for row in rows if row[2] not in queues]
            if len(kept) != len(rows):
                handle.seek(0)
                handle.write(json.dumps(kept).encode())
                handle.truncate()
