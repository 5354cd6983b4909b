"""What a job's code gets in the child process: the settings, the store and its fencing token."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.store import Store
from shared.store import jobs as store_jobs


@dataclass
class JobContext:
    settings: Settings
    store: Store
    job_id: int
    token: int
    kind: str
    spec: dict[str, Any]
    parent_id: int | None
    source_job_id: int | None
    shard: int | None
    should_stop: Callable[[], bool]

    @property
    def workdir(self) -> Path:
        path = self.settings.job_dir(self.job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def update(self, **values: Any) -> None:
        """A fenced write of this job's columns."""
        store_jobs.update_job(self.store, self.job_id, self.token, **values)
