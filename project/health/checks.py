"""Readiness checks: each returns None when healthy, or what is wrong and what to do."""

from functools import cache

from alembic.script import ScriptDirectory
from celery import current_app as current_celery_app
from flask import current_app
from sqlalchemy import text

from project import db

CHECK_TIMEOUT_SECONDS = 2


@cache
def migration_heads(directory: str) -> frozenset[str]:
    """Return the head revisions of the migrations folder (read once per process)."""
    return frozenset(ScriptDirectory(directory).get_heads())


def check_database() -> str | None:
    """Check the database answers and its schema is at the migrations' head."""
    try:
        with db.engine.connect() as connection:
            has_version_table = db.inspect(connection).has_table("alembic_version")
            current = (
                set(connection.scalars(text("SELECT version_num FROM alembic_version")))
                if has_version_table
                else set()
            )
    except Exception as error:  # any failure to reach it means not ready
        return (
            f"database unreachable ({type(error).__name__}); "
            "check DATABASE_URL and that the server runs"
        )
    if current != migration_heads(current_app.extensions["migrate"].directory):
        return "database schema is not at the latest migration; run `flask db upgrade`"
    return None


def check_broker() -> str | None:
    """Check the Celery broker accepts a connection."""
    try:
        with current_celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as error:  # any failure to reach it means not ready
        return (
            f"broker unreachable ({type(error).__name__}); "
            "check CELERY_BROKER_URL and that Redis runs"
        )
    return None
