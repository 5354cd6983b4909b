"""The SQL store: the record of truth for studies, jobs, epochs, checkpoints and scores.

SQLAlchemy 2.0 typed ORM; schema created and upgraded by Alembic (shared/store/migrations).
"""
from shared.store.db import Store, open_store
from shared.store.lease import Lease
from shared.store.schema import Assembly, Checkpoint, Epoch, Job, JobKind, JobStatus, Outcome, Score, Study

__all__ = ["Store", "open_store", "Lease", "Study", "Job", "JobKind", "JobStatus", "Outcome", "Assembly", "Epoch", "Checkpoint", "Score"]
