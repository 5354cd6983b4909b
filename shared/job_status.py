"""A job's states, apart from the tables: the CLI names them (`orch status --state`) in modules that
`orch --help` loads, where importing the store (SQLAlchemy) would double its start-up."""
from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


FINISHED = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)
