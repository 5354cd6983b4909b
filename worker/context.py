"""What a job's code gets in the child process: the settings, the store and the job's lease."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.store import Lease, Store


@dataclass
class JobContext:
    settings: Settings
    store: Store
    lease: Lease  # every write to this job goes through it
    kind: str
    spec: dict[str, Any]
    parent_id: int | None
    source_job_id: int | None
    shard: int | None
    should_stop: Callable[[], bool]

    @property
    def job_id(self) -> int:
        return self.lease.job_id

    @property
    def workdir(self) -> Path:
        path = self.settings.job_dir(self.job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path
