"""Database engines and sessions: connection health checks, the bookkeeping engine."""

import logging
import select
from typing import Any

from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError

log = logging.getLogger(__name__)

BOOKKEEPING = "bookkeeping_engine"


class SessionSafeSQLAlchemy(SQLAlchemy):
    """Flask-SQLAlchemy whose end-of-request clean-up survives a database that went away."""

    def _teardown_session(self, exc: BaseException | None) -> None:
        # Closing the session rolls back its transaction. If the server closed the connection
        # after the request's last query (a restart), that rollback fails; the pool has then
        # discarded the connection, and the response already made must still go out, rather
        # than become gunicorn's bare 500.
        try:
            self.session.remove()
        except DBAPIError as error:
            log.warning("database connection lost at the end of a request: %s", error.orig)
            self.session.registry.clear()


def server_spoke(dbapi_connection: Any) -> bool:
    """Say whether an idle connection's socket has something to read (close, error, notice).

    An idle PostgreSQL connection has nothing to read unless the server closed it (a
    restart, `pg_terminate_backend`) or sent an asynchronous message. Asking the kernel
    costs no round trip; SQLite connections have no socket and never do.
    """
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return False
    poller = select.poll()
    poller.register(fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


def ping_closed_connections(engine: Engine) -> None:
    """Make the engine's pool replace a connection the server closed while it sat idle.

    What `pool_pre_ping` guards against, without its `SELECT 1` round trip on every
    checkout (a quarter of POST /tasks/divide's time, profiled): the ping runs only when
    the socket says the server spoke.
    """

    @event.listens_for(engine, "checkout")
    def ping_if_server_spoke(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if not server_spoke(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(f"the server closed this connection: {error}") from error


def make_bookkeeping_engine(engine: Engine) -> Engine:
    """Return an engine for single-statement bookkeeping writes to the task records.

    Autocommit, and on PostgreSQL commits that do not wait for the disk
    (synchronous_commit off): each write is one round trip with no WAL flush. A crash of
    the database can forget the last fraction of a second of such writes; what they
    record (a publish, a delivery, an outcome) is also in Redis, or is done again.
    """
    if engine.dialect.name != "postgresql":
        return engine  # SQLite: one file, nothing to gain from a second engine
    return create_engine(
        engine.url,
        isolation_level="AUTOCOMMIT",
        connect_args={"options": "-c synchronous_commit=off"},
    )


def bookkeeping_engine() -> Engine:
    """Return the current app's engine for task-record bookkeeping (see make_bookkeeping_engine)."""
    return current_app.extensions[BOOKKEEPING]


def all_engines(app: Flask) -> set[Engine]:
    """Return every engine the app uses, once each (needs an app context)."""
    from project import db

    return {*db.engines.values(), app.extensions[BOOKKEEPING]}


def init_database_engines(app: Flask) -> None:
    """Create the bookkeeping engine, and health-check the connections of every engine."""
    from project import db

    with app.app_context():
        app.extensions[BOOKKEEPING] = make_bookkeeping_engine(db.engine)
        for engine in all_engines(app):
            ping_closed_connections(engine)
