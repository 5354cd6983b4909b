"""`orch db upgrade|current`: Alembic migrations (automatic for the embedded SQLite store)."""
from __future__ import annotations

import click

from orchestrator.context import CliState, pass_state
from shared.config import redact


@click.group()
def db() -> None:
    """Manage the store's schema: upgrade an existing PostgreSQL database after an orch upgrade
    (SQLite upgrades itself; an empty PostgreSQL database gets the schema on first use).

    \b
    Examples:
      orch db current        # the store's schema revision and the newest one
      orch db upgrade        # bring it to the newest
    """


@db.command()
@click.option("--with-workers-running", "workers_running", is_flag=True,
              help="Upgrade though workers answer over the broker (each then fails the jobs it takes).")
@pass_state
def upgrade(obj: CliState, workers_running: bool) -> None:
    """Create or upgrade the schema to the newest revision. Stop every worker first, and start them
    again with the upgraded orch: a worker started before the upgrade fails each job it takes after
    it (its orch expects the old schema), so the upgrade is refused while workers answer.

    \b
    Example:
      ORCH_DATABASE_URL=postgresql+psycopg://orch@db/orch orch db upgrade
    """
    from shared.store.db import current_revision, head_revision, make_engine, refuse_newer_schema
    from shared.store.db import upgrade as run_upgrade

    engine = make_engine(obj.settings.database_url)
    current = current_revision(engine)
    refuse_newer_schema(current)  # before asking the workers: no upgrade is coming at all
    if current not in (None, head_revision()) and not workers_running:
        _refuse_running_workers(obj, current)
    revision = run_upgrade(engine)
    click.echo(f"{redact(obj.settings.database_url)}: at revision {revision}")


def _refuse_running_workers(obj: CliState, current: str) -> None:
    """From a lab's upgrade: an older worker left running took the next jobs and failed each one
    ("schema is at revision 0007_progress, orch needs 0001"). A worker answering now started against
    `current` (a worker refuses a schema other than its own), so its orch is the older one."""
    from orchestrator.workers import queues_read
    from shared.errors import OrchError

    running = sorted(queues_read(obj) or {})  # a broker that does not answer: nothing to ask, nothing said
    if running:
        plural = len(running) > 1
        raise OrchError(f"{len(running)} worker{'s are' if plural else ' is'} running ({', '.join(running)}): stop "
                        f"{'them' if plural else 'it'} first and start {'them' if plural else 'it'} again with "
                        f"the upgraded orch; a worker started at revision {current} fails every job it takes "
                        "after the upgrade (--with-workers-running upgrades anyway)")


@db.command()
@pass_state
def current(obj: CliState) -> None:
    """Print the schema revision of the configured database and the newest one.

    \b
    Example:
      ORCH_DATABASE_URL=postgresql+psycopg://orch@db/orch orch db current
    """
    from shared.store.db import current_revision, head_revision, make_engine

    missing = _missing_sqlite_file(obj.settings.database_url)
    if missing is not None:  # a fresh home: "database unreachable: unable to open database file", exit 3
        click.echo(f"orch: database {redact(obj.settings.database_url)}: no file yet (the first command that "
                   "writes to the store makes it)", err=True)
        click.echo(f"current: none  head: {head_revision()}")
        return
    engine = make_engine(obj.settings.database_url)
    revision = current_revision(engine)  # first: a database that refuses is its one error line, not a second
    # which database: with ORCH_DATABASE_URL unset, "current: none" read like an empty PostgreSQL
    click.echo(f"orch: database {redact(obj.settings.database_url)}", err=True)
    click.echo(f"current: {revision or 'none'}  head: {head_revision()}")


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite store that does not exist yet (reading it would create an empty file, or
    fail where its folder is missing); None for another database, or a file that is there."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return None if Path(parsed.database).exists() else parsed.database
