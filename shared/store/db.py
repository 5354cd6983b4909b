"""Opening the store: engine, sessions, SQLite pragmas and Alembic migrations."""
from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Executable, create_engine, event, exc, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings, redact
from shared.errors import ConfigError, OrchError, SchemaMismatch, StoreRefused, StoreUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_LOCK_KEY = 0x6F726368  # "orch": the PostgreSQL advisory lock held while the schema is created
# What the driver raises when the database does not answer (refused, dropped, locked, pool timed
# out): SQLAlchemy wraps sqlite3's and psycopg's errors in these.
UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)
# What PostgreSQL says, while connecting, of a setting no retry fixes (its own words, after "FATAL:")
REFUSED = re.compile(r'FATAL:\s+((?:database|role) "[^"]*" does not exist|password authentication failed for user "[^"]*")')


@contextmanager
def store_errors() -> Iterator[None]:
    """The store's boundary: a database that does not answer becomes StoreUnavailable (one line,
    password hidden), a file that is no database a ConfigError; other errors (a constraint, a bug)
    pass through as they are."""
    try:
        yield
    except UNAVAILABLE as error:
        if "readonly database" in _first_line(error):  # still retried: a disk remounted read-only may come back
            raise StoreUnavailable("the store is read-only here (its file or folder cannot be "
                                   "written): orch can read it but not change it") from error
        if _first_line(error) == "database is locked":  # SQLite, after its busy wait
            raise StoreUnavailable(
                f"the store is locked: another process has held its write lock for {SQLITE_BUSY_S:g} s or more (a "
                "stopped orch process, after Ctrl-Z? a database browser with a change not yet written?); "
                "`fuser -v` on the store's file lists the processes that have it open") from error
        refused = REFUSED.search(_first_line(error))
        if refused:
            raise StoreRefused(f"{refused.group(1)}: the server answered and refused the setting, so no retry "
                               "helps") from None
        raise StoreUnavailable(f"database unreachable: {_first_line(error)}") from error
    except exc.DatabaseError as error:
        if _while_connection_lost(error):
            raise StoreUnavailable(f"database unreachable: {_first_line(error)}") from error
        if type(error) is not exc.DatabaseError:  # its subclasses: a constraint, a bad statement...
            raise
        # the driver's plain DatabaseError: sqlite's "file is not a database" (the setting names a file
        # of something else), no retry helps
        raise ConfigError(f"ORCH_DATABASE_URL: not a usable database ({_first_line(error)})") from None


def _while_connection_lost(error: BaseException) -> bool:
    """An error raised while handling a lost connection: SQLAlchemy's pre-ping on a socket the server
    closed fails, and its cleanup then raises psycopg's ProgrammingError ("can't change 'autocommit'
    now: connection in transaction status ACTIVE"), which hid the outage and failed a job (seen once
    in four runs of tests/integration/test_store_outage.py)."""
    seen = error.__context__
    while seen is not None:
        if isinstance(seen, UNAVAILABLE) or type(seen).__name__ in ("OperationalError", "InterfaceError"):
            return True
        seen = seen.__context__
    return False


def _first_line(error: Exception) -> str:
    orig = getattr(error, "orig", None)  # the driver's own error, without SQLAlchemy's SQL dump
    text = str(orig if orig is not None else error).strip()
    return redact(text.splitlines()[0] if text else type(error).__name__)


def updated(session: Session, statement: Executable) -> int:
    """The rows an UPDATE changed: with the state change's condition in its WHERE clause, 1 means
    this caller made the change and 0 that someone else got there first."""
    return cast("CursorResult[Any]", session.execute(statement)).rowcount


class Store:
    """An engine and a session factory. Callers open sessions with `with store.session() as s:`."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error; a database
        that does not answer raises StoreUnavailable."""
        with store_errors(), self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


SQLITE_BUSY_S = 30.0  # what a SQLite writer waits for another process's lock (and the WAL switch, for the file)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_S})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pre_ping: a PostgreSQL restart must not leave dead connections in the pool.
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4,
                         connect_args={"connect_timeout": 5})


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the CLI read while a worker writes; the busy timeout makes writers wait, not fail.
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_S * 1000)}")
    # WAL is the file's own, once set: asked again on every connection, the switch wanted the whole
    # file and failed at once ("database is locked", no busy wait) while another process wrote, so
    # one of four processes opening a fresh home together lost (1 in 48 trials on a loaded CPU)
    if not _in_wal(cursor):
        _switch_to_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _in_wal(cursor: Any) -> bool:
    return str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"


def _switch_to_wal(cursor: Any) -> None:
    """Turn a new file to WAL, waiting while another process holds it. The switch takes no busy wait:
    a process that had just made a fresh home's file (under the setup lock) found it not yet in WAL,
    and its switch failed at once while a second process, which saw the file appear and opened it
    without the lock, was switching it too (2 in 78 trials of four processes, a quiet CPU)."""
    deadline = time.monotonic() + SQLITE_BUSY_S
    while True:
        try:
            if _in_wal(cursor):  # the other process switched it
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(0.02)


@contextmanager
def _setup_lock(engine: Engine) -> Iterator[None]:
    """One process at a time turns on WAL and migrates a SQLite file.

    A worker and a CLI started together on a fresh home both found no schema and both ran the
    migration: "table ... already exists" or "database is locked" (switching to WAL needs the
    whole file). The lock sits beside the database; PostgreSQL takes an advisory lock in `upgrade`.
    """
    database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    path = Path(database).with_name(Path(database).name + ".setup.lock")
    try:
        handle = path.open("a")
    except OSError as error:  # a folder that is not there, or not writable: the setting, not a retry
        raise ConfigError(f"ORCH_DATABASE_URL: cannot use {database} ({error.strerror or type(error).__name__} "
                          f"beside it); name a writable folder's file") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def _current_without_lock(engine: Engine) -> bool:
    """An existing SQLite file already at head, read without the setup lock; False for anything else
    (a new file, an older schema, or a file another process is creating and turning to WAL, whose
    open can fail meanwhile: the locked path then waits for that process and looks again)."""
    database = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or not database or not Path(database).is_file():
        return False
    try:
        return current_revision(engine) == head_revision()
    except OrchError:
        return False


def _read_only_copy(engine: Engine) -> Store | None:
    """A SQLite file in a folder this user cannot write (a backup, a read-only share, a home remounted
    read-only) that no process holds open, opened as it is on disk. SQLite's WAL reader creates the
    -shm file beside the database to read at all, which such a folder refuses ("unable to open
    database file"); `immutable=1` reads the file without it. None where the file can be opened as
    usual (the caller goes on and migrates it) or is not such a copy."""
    database = engine.url.database
    if (engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:"
            or not Path(database).is_file() or os.access(Path(database).parent, os.W_OK)):
        return None
    from urllib.parse import quote

    copy = make_engine(f"sqlite:///file:{quote(str(Path(database).resolve()))}?immutable=1&uri=true")
    current = current_revision(copy)
    if current != head_revision():
        copy.dispose()
        refuse_newer_schema(current)
        raise ConfigError(f"ORCH_DATABASE_URL: {database} is read-only here and its schema is at revision "
                          f"{current}, orch needs {head_revision()}: copy it to a writable folder, where orch "
                          "upgrades it")
    return Store(copy)


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> str:
    """Apply every pending migration; returns the revision now current."""
    from alembic import command

    refuse_newer_schema(current_revision(engine))
    cfg = alembic_config(engine)
    with store_errors(), engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # two first users of an empty database: one migrates
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return current_revision(engine) or "base"


# Every command opens the store and compares these two; importing alembic for that costs 0.15-0.3 s
# per command, so both are read without it (tests check them against alembic's own answers).
REVISION_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*['\"]?([\w.-]+|None)['\"]?", re.M)


def current_revision(engine: Engine) -> str | None:
    """The revision in alembic's own table, or None for an empty database."""
    with store_errors(), engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _revisions() -> tuple[set[str], set[str]]:
    """(every revision of orch's migrations, every one named as a parent)."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((key, value) for key, value in REVISION_LINE.findall(path.read_text()))
        revisions.add(found["revision"])
        parents.add(found.get("down_revision", "None"))
    return revisions, parents


def head_revision() -> str:
    """The one revision no other migration names as its parent."""
    revisions, parents = _revisions()
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise ConfigError(f"orch's migrations have {len(heads)} heads ({', '.join(heads)}): a broken install")
    return str(heads[0])


def refuse_newer_schema(current: str | None) -> None:
    """A schema this orch has no migration for was written by a newer orch (a lab upgrades one machine
    at a time): alembic's "Can't locate revision" came out as a traceback, and the advice to run
    `orch db upgrade` cannot help, since no orch downgrades a store."""
    if current is not None and current not in _revisions()[0]:
        raise SchemaMismatch(f"database schema is at revision {current}, newer than this orch knows (its newest is "
                             f"{head_revision()}): a newer orch upgraded it; upgrade orch on this machine")


def open_store(settings: Settings, *, migrate: bool | None = None) -> Store:
    """Open the configured store. The embedded SQLite store migrates itself; an empty PostgreSQL
    database gets the current schema; an older one must be upgraded with `orch db upgrade`.
    StoreUnavailable if the database does not answer."""
    with store_errors():
        return _open(settings, migrate)


def _open(settings: Settings, migrate: bool | None) -> Store:
    embedded = settings.database_url.startswith("sqlite")
    if embedded:
        try:
            settings.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a home on a path that cannot hold it: the user's setting, not a retry
            raise ConfigError(f"--home / ORCH_HOME: cannot create {settings.home} "
                              f"({exc.strerror or type(exc).__name__})") from None
    engine = make_engine(settings.database_url)
    if migrate if migrate is not None else embedded:
        # a file already at head needs no lock: the lock file beside it is a write, and a reader of a home
        # that went read-only (a full or remounted disk, a backup) was refused, a job failed for it
        if not _current_without_lock(engine):
            copy = _read_only_copy(engine)
            if copy is not None:
                engine.dispose()  # its failed open may have pooled a connection to the file
                return copy
            with _setup_lock(engine):
                if current_revision(engine) != head_revision():
                    upgrade(engine)
        return Store(engine)
    current = current_revision(engine)
    refuse_newer_schema(current)
    if current is None:  # an empty database gets the current schema on first use, as SQLite does
        current = upgrade(engine)
    if current != head_revision():  # an older schema: upgrading it is the operator's step
        engine.dispose()
        raise SchemaMismatch(f"database schema is at revision {current}, orch needs {head_revision()}: "
                             "run `orch db upgrade`")
    return Store(engine)
