"""One artifacts folder, one store.

Job ids are a store's own, and a job's files live at ORCH_ARTIFACTS/jobs/<id>: two stores given
the same folder (two ORCH_HOMEs with one ORCH_ARTIFACTS, a lab's second database, a SQLite store
deleted and made anew beside its old checkpoints) wrote over each other's checkpoints, and a
resumed job could load another store's. The first worker to use a folder writes its store's
identity into it; a worker of another store is refused before it takes a job.
"""
from __future__ import annotations

import os
from pathlib import Path

from shared.atomic import temp_path
from shared.config import ARTIFACTS_OWNER_FILE
from shared.errors import ConfigError
from shared.store import Store, reads

OWNER_FILE = ARTIFACTS_OWNER_FILE


def claim_artifacts(artifacts: Path, store: Store) -> None:
    """Write the store's identity into `artifacts` if it holds none; ConfigError if it holds another's."""
    with store.session() as s:
        mine = reads.store_id(s)
    owner = artifacts / OWNER_FILE
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        if not owner.exists():
            _create_once(owner, mine)
        found = owner.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"ORCH_ARTIFACTS ({artifacts}): cannot use it ({exc.strerror or type(exc).__name__})") from None
    if found != mine:
        raise ConfigError(
            f"ORCH_ARTIFACTS ({artifacts}) holds the files of another store ({OWNER_FILE}: {found}; this store "
            f"is {mine}): its job ids would write over that store's checkpoints. Give this store its own "
            f"ORCH_ARTIFACTS, or move that folder away if its store is gone")


def _create_once(owner: Path, store_id: str) -> None:
    """The file, whole, unless another worker made it first (a link never replaces a file): two
    stores starting at once cannot both claim the folder."""
    tmp = temp_path(owner)
    try:
        tmp.write_text(store_id + "\n")
        os.link(tmp, owner)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
