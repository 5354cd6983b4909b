"""State on ctx.obj: settings, store and Celery app, each opened on first use."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from shared.config import Settings, load_settings

if TYPE_CHECKING:
    from celery import Celery

    from shared.store import Store


class CliState:
    """What every command shares on click's `ctx.obj` (not click's own Context): the settings, and the
    store and Celery app opened on first use, so `orch --help` opens neither."""

    def __init__(self, home: str | None):
        self._home = home
        self._settings: Settings | None = None
        self._store: Store | None = None
        self._celery: Celery | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._home)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            from shared.store import open_store

            new_home = self.settings.database_url.startswith("sqlite") and not self.settings.home.exists()
            self._store = open_store(self.settings)
            if new_home:  # a typo in --home read as an empty store, with nothing said
                click.echo(f"orch: note: made {self.settings.home} (--home / ORCH_HOME): a new, empty store", err=True)
        return self._store

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            from shared.celery_app import make_celery

            self._celery = make_celery(self.settings, client=True)
        return self._celery


pass_state = click.make_pass_decorator(CliState)
