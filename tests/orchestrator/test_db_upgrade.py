"""`orch db upgrade` while workers run: from a lab's upgrade walk, an older worker left running took the
next jobs after the upgrade and failed each one ("schema is at revision 0007_progress, orch needs 0001")."""
from __future__ import annotations

import time

from tests.conftest import Orch


def test_an_upgrade_is_refused_while_a_worker_answers(orch: Orch) -> None:
    from shared.config import load_settings
    from shared.store.db import alembic_config, current_revision, head_revision, make_engine

    worker = orch.start_worker("--name", "old@lab", "--threads", "1")
    deadline = time.monotonic() + 120
    while "old@lab ready." not in worker.output():
        assert time.monotonic() < deadline and worker.proc.poll() is None, worker.output()[-2000:]
        time.sleep(0.5)
    engine = make_engine(load_settings(orch.home).database_url)
    try:
        from alembic import command

        with engine.begin() as conn:  # the store as the older orch of that worker left it
            cfg = alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0006_retry_budget")
        refused = orch.run("db", "upgrade")
        assert refused.returncode == 2 and refused.stderr.splitlines() == [
            "Error: 1 worker is running (old@lab): stop it first and start it again with the upgraded orch; a "
            "worker started at revision 0006_retry_budget fails every job it takes after the upgrade "
            "(--with-workers-running upgrades anyway)"], refused.stderr
        assert current_revision(engine) == "0006_retry_budget"  # nothing changed
        forced = orch.run("db", "upgrade", "--with-workers-running", check=True)
        assert forced.stdout.rstrip().endswith(f"at revision {head_revision()}")
        assert orch.run("db", "upgrade", check=True).returncode == 0  # at the newest: nothing to refuse
    finally:
        worker.stop()
        engine.dispose()
