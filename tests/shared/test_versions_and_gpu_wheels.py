"""What the GPU check carries to a machine without network (bench/gpu_wheels.py), and the version record
that lets orch run there from a checkout without being installed (shared/versions.py)."""
from __future__ import annotations

from bench.gpu_wheels import DEVICE_HAS, NOT_CARRIED, runtime_closure
from shared.versions import installed_version


def test_installed_version_says_what_is_installed_and_question_mark_otherwise() -> None:
    import sqlalchemy

    assert installed_version("sqlalchemy") == sqlalchemy.__version__
    assert installed_version("no-such-package-orch-test") == "?"


def test_the_wheels_are_orchs_runtime_dependencies_without_torch_or_the_images_packages() -> None:
    carried = set(runtime_closure("3.12"))
    # what orch imports to queue, store and score, and what those need in turn (extras included)
    assert {"celery", "kombu", "billiard", "vine", "sqlalchemy", "alembic", "mako", "pydantic", "pydantic-core",
            "simplejpeg", "psycopg", "psycopg-binary", "redis", "flower", "tornado"} <= carried
    assert not carried & (NOT_CARRIED | DEVICE_HAS)  # torch and numpy stay the image's own builds
    assert not {name for name in carried if name.startswith("nvidia")}
