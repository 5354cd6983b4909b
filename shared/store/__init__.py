"""The SQL store: the record of truth for studies, jobs, epochs, checkpoints and scores.

SQLAlchemy 2.0 typed ORM; schema created and upgraded by Alembic (shared/store/migrations).
All SQL lives in this package: reads.py (the CLI's reads), report_reads.py (the report's), jobs.py
(submit, cancel, retry, sweep), scoring_runs.py (a scoring run outside a lease), lease.py (the one
write path of a worker), takeover.py (the sweeper's, through a lease it takes; holder.py says when a
lease's holder is gone). Session convention, the same in every module: a function that takes a
`Session` runs in the caller's transaction and never commits; one that takes a `Store` (or a
`Lease`'s methods) opens, commits and closes its own. A database that does not answer raises
StoreUnavailable (db.py), never a driver's exception.
"""
from shared.store.db import Store, open_store
from shared.store.lease import EpochFile, Lease
from shared.store.schema import Assembly, Checkpoint, Epoch, Event, Job, JobKind, JobStatus, Outcome, Score, Study

__all__ = ["Store", "open_store", "Lease", "EpochFile", "Study", "Job", "JobKind", "JobStatus", "Outcome", "Assembly", "Epoch",
           "Checkpoint", "Event", "Score"]
