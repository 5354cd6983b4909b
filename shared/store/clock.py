"""The database's clock, as unix seconds: lease times come from it, not from each host's clock.

Two workers whose host clocks disagree by a minute would each think the other's lease expired (or
never does); the database server has one clock, so every heartbeat and every expiry check reads it.
`db_now()` is a SQL expression evaluated by the server inside the statement that uses it.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Float, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement


class db_now(FunctionElement[float]):  # noqa: N801 - reads as the SQL function it stands for
    """The database server's current time in unix seconds (sub-second precision)."""

    type = Float()
    inherit_cache = True


@compiles(db_now, "postgresql")
def _pg_now(_element: db_now, _compiler: Any, **_kw: Any) -> str:
    # clock_timestamp(), not now(): now() is frozen at the start of the transaction
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(db_now, "sqlite")
def _sqlite_now(_element: db_now, _compiler: Any, **_kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"  # julianday has millisecond precision


def read_now(session: Session) -> float:
    """The database's current time, for a caller that must compare it with stored lease times."""
    return float(session.scalar(select(db_now())) or 0.0)
