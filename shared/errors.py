"""The exception hierarchy. Every user-facing failure is one of these, with a one-line message."""
from __future__ import annotations

import errno


class OrchError(Exception):
    """Base class: the message is one line, shown to the user without a traceback."""


class SpecError(OrchError, ValueError):
    """A job spec that cannot be built: names the field and the allowed values."""

    def __init__(self, field: str, message: str):
        self.field = field  # a spec field (model.groups) or, once renamed for the CLI, an option (--groups)
        self.message = message  # the text after "field: "
        super().__init__(f"{field}: {message}")


class DataError(OrchError):
    """A data folder or label file that cannot be used (missing, empty, corrupt...)."""


class CheckpointError(OrchError):
    """A checkpoint that is missing or does not match the spec or the data."""


class NonFiniteLoss(OrchError):
    """Training produced a NaN or infinite loss; the job stops with this reason."""


class DiskFull(OrchError, OSError):
    """A write found its device full. Not retried: the next attempt would train the epoch again only to
    fill the same disk; `orch retry`, once there is room, resumes from the last recorded epoch. Raised by
    shared/atomic.py, the one write path of every file orch keeps; an OSError still, for callers that
    catch those (the broker's sender)."""


def disk_full_message(where: str) -> str:
    """What a job that filled its disk says (`where`: the folder, or "" where the error does not say)."""
    return (f"No space left on the device{f' of {where}' if where else ''}: free some (`orch delete --study S` "
            "removes a finished study's checkpoints, `orch data cache --prune` stale decoded images), then `orch "
            "retry` the job (a training job resumes from its last recorded epoch)")


def disk_full_in(exc: BaseException) -> OSError | None:
    """The ENOSPC (or EDQUOT) OSError behind `exc`, if any: torch.save reports a full disk as a
    RuntimeError ("unexpected pos ...") raised while handling it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class ConfigError(OrchError):
    """Bad settings (URL schemes, folders)."""


class SchemaMismatch(ConfigError):
    """The store's schema is not the one this orch writes: older (`orch db upgrade`) or newer (a newer
    orch upgraded it). A worker started before an upgrade meets it in its job's process: the job is not
    at fault, so the worker gives it back uncounted and stops (worker/supervisor.py)."""


class StoreRefused(ConfigError):
    """The database server answered and refused the setting: a database or a role it does not have, a
    wrong password. Exit 2, not 3: no retry helps (the message was "database unreachable", exit 3)."""


class Unavailable(OrchError):
    """A service did not answer (refused, dropped, timed out): transient, worth a retry."""


UNAVAILABLE_EXIT = 3  # the exit code of a command a database or broker did not answer (bad input: 2)


class StoreUnavailable(Unavailable):
    """The database did not answer: raised by the store (shared/store/db.py) for the driver's
    connection errors, so no caller needs to know SQLAlchemy's or psycopg's exception types."""


class BrokerUnavailable(Unavailable):
    """The broker did not answer: raised where a message is sent (shared/broker_errors.py)."""


class StaleLease(OrchError):
    """A worker whose fencing token is no longer current tried to write."""


class JobCancelled(OrchError):
    """The job was cancelled while it ran."""


PERMANENT_ERRORS: tuple[type[OrchError], ...] = (SpecError, DataError, CheckpointError, NonFiniteLoss, DiskFull)
"""Failures that retrying cannot fix: the job fails at once with the reason."""
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (Unavailable,)
"""Failures a retry may fix: a job is retried a few times before it fails."""
