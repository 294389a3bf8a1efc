"""Database connection health: a pooled connection the server closed is replaced before use."""

import select
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError


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


def init_connection_checks(app: Flask) -> None:
    """Check pooled connections of every engine the app's database extension created."""
    from project import db

    with app.app_context():
        for engine in db.engines.values():
            ping_closed_connections(engine)
