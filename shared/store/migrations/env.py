"""Alembic environment: runs on the connection handed in by shared.store.db.upgrade."""
from alembic import context
from sqlalchemy import Connection, create_engine

from shared.store.schema import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # `alembic` run by hand: connect from the URL
        with create_engine(config.get_main_option("sqlalchemy.url") or "").begin() as connection:
            _migrate(connection)
    else:
        _migrate(connection)


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
