"""Errors are classified by their type where they arise: permanent ones fail the job at once, a
service that does not answer is retried; the store and the senders raise our types for them."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import IntegrityError

from shared.errors import BrokerUnavailable, DataError, JobCancelled, SpecError, StaleLease, StoreUnavailable
from shared.store import Outcome
from shared.store.db import Store
from worker.child import classify


@pytest.mark.parametrize("exc, outcome", [
    (DataError("x: corrupt image"), Outcome.failed),
    (SpecError("lr", "too big"), Outcome.failed),
    (JobCancelled("stop"), Outcome.cancelled),
    (StaleLease("token 3"), Outcome.stale),
    # the store's outage is not one of the job's tries: given back uncounted once the store answers
    (StoreUnavailable("database unreachable: refused"), Outcome.store_lost),
    (BrokerUnavailable("broker unreachable: refused"), Outcome.transient),
    (ConnectionResetError(104, "reset"), Outcome.transient),
    # a permission error on the data: retrying does not grant the permission
    (PermissionError(13, "Permission denied", "/data/test/3.jpg"), Outcome.failed),
    # a constraint the store refused (a NaN in a NOT NULL column) is not an outage
    (IntegrityError("INSERT ...", {}, Exception("NOT NULL constraint failed: epochs.val_loss")), Outcome.failed),
    (ValueError("a bug"), Outcome.failed),
])
def test_classify_by_type(exc: BaseException, outcome: Outcome) -> None:
    kind, reason = classify(exc)
    assert kind is outcome and "\n" not in reason


def test_a_database_that_does_not_answer_is_store_unavailable_with_the_password_hidden() -> None:
    store = Store(create_engine("postgresql+psycopg://orch:s3cret@127.0.0.1:1/x", connect_args={"connect_timeout": 2}))
    with pytest.raises(StoreUnavailable, match="database unreachable") as err, store.session() as s:
        s.connection()
    assert "s3cret" not in str(err.value) and "\n" not in str(err.value)
    assert classify(err.value)[0] is Outcome.store_lost


def test_a_broker_that_does_not_answer_is_broker_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.broker_errors import broker_boundary
    from shared.celery_app import check_broker, make_celery
    from shared.config import load_settings

    monkeypatch.setenv("ORCH_BROKER_URL", "redis://:s3cret@127.0.0.1:1/0")
    app = make_celery(load_settings(tmp_path / "home"))
    with pytest.raises(BrokerUnavailable, match="broker unreachable") as err, broker_boundary():
        check_broker(app, timeout=1.0)
    assert "s3cret" not in str(err.value)


def test_other_errors_pass_the_boundaries_unchanged() -> None:
    from shared.broker_errors import broker_boundary

    with pytest.raises(KeyError), broker_boundary():
        raise KeyError("not a connection error")


def _torch_style_disk_full(filename: str | None = None) -> RuntimeError:
    """What torch.save raises on a full disk: a RuntimeError raised while handling the ENOSPC."""
    import errno
    import os

    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 15886912 vs 15886808") \
                from None  # torch's own: chained by context only
    except RuntimeError as exc:
        return exc


def test_a_full_disk_fails_the_job_with_one_line_that_says_so() -> None:
    """torch's "unexpected pos 15886912 vs 15886808" failed the job as an unexpected error (a traceback
    in its history), the ENOSPC halfway down it; a decode cache's ENOSPC was retried twice."""
    import errno
    import os

    kind, reason = classify(_torch_style_disk_full())
    assert kind is Outcome.failed and reason == ("No space left on the device: free some (`orch delete --study S` removes "
                                                     "a finished study's checkpoints, `orch data cache --prune` stale "
                                                     "decoded images), then `orch retry` the job (a training job "
                                                     "resumes from its last recorded epoch)")
    stale = StaleLease("token 3")
    stale.__context__ = _torch_style_disk_full()  # a lost lease found while handling a full disk: still stale
    assert classify(stale)[0] is Outcome.stale
    kind, reason = classify(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/art/jobs/4/.cache.npy.1.tmp"))
    assert kind is Outcome.failed and reason.startswith("No space left on the device of /art/jobs/4: ")


def test_a_checkpoint_write_that_fills_the_disk_is_disk_full_naming_its_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.engine.checkpoint as checkpoint
    from shared.errors import DiskFull

    def full(state: object, fh: object) -> None:
        raise _torch_style_disk_full()

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(DiskFull, match=f"^c.pt: No space left on the device of {tmp_path}: free some"):
        checkpoint.save_atomic({"a": 1}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []  # the temp file removed
    kind, reason = classify(DiskFull("x"))
    assert kind is Outcome.failed and reason == "x"


def test_an_error_raised_while_a_connection_was_lost_is_the_outage() -> None:
    """SQLAlchemy's pre-ping on a socket the server closed: its cleanup raised psycopg's ProgrammingError
    ("can't change 'autocommit' now"), which hid the outage, and the job failed (test_store_outage, once)."""
    import psycopg
    from sqlalchemy import exc

    from shared.store.db import store_errors

    def ping() -> None:
        try:
            raise psycopg.OperationalError("connection socket closed")
        except psycopg.OperationalError:
            try:
                raise psycopg.ProgrammingError("can't change 'autocommit' now: connection in transaction status ACTIVE")
            except psycopg.ProgrammingError as cleanup:
                raise exc.ProgrammingError("SELECT 1", {}, cleanup) from cleanup

    with pytest.raises(StoreUnavailable, match="database unreachable: can't change 'autocommit' now") as err, \
            store_errors():
        ping()
    assert classify(err.value)[0] is Outcome.store_lost
    with pytest.raises(exc.ProgrammingError), store_errors():  # a bad statement on a live connection stays itself
        raise exc.ProgrammingError("SELEC 1", {}, psycopg.ProgrammingError("syntax error"))
