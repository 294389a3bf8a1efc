"""Database engines and sessions: connection health checks, the bookkeeping engine."""

import logging
import os
import select
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.sql import Executable

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


def bookkeeping_engine(app: Flask | None = None) -> Engine:
    """Return the app's (by default the current app's) engine for task-record bookkeeping.

    See make_bookkeeping_engine.
    """
    return (app or current_app).extensions[BOOKKEEPING]


def all_engines(app: Flask) -> set[Engine]:
    """Return every engine the app uses, once each (needs an app context)."""
    from project import db

    return {*db.engines.values(), app.extensions[BOOKKEEPING]}


def init_database_engines(app: Flask) -> None:
    """Make the bookkeeping engine, check connections, let safe requests read without BEGIN."""
    from project import db
    from project.read_requests import read_safe_requests_without_transactions

    with app.app_context():
        app.extensions[BOOKKEEPING] = make_bookkeeping_engine(db.engine)
        for engine in all_engines(app):
            ping_closed_connections(engine)
        for engine in db.engines.values():
            read_safe_requests_without_transactions(engine)


@dataclass(frozen=True)
class _DriverSQL:
    """A statement as one dialect's driver takes it: SQL text, and how to pass values."""

    sql: str
    constants: dict[str, Any]  # values fixed in the statement (states, increments)
    processors: dict[str, Callable[[Any], Any]]  # per parameter: JSON encoding and the like
    positions: tuple[str, ...] | None  # the parameters' order, for positional drivers (SQLite)

    def parameters(self, values: dict[str, Any]) -> dict[str, Any] | list[Any]:
        """The values as the driver takes them: constants added, processed, ordered."""
        named = {**self.constants, **values}
        for name, process in self.processors.items():
            named[name] = process(named[name])
        return [named[name] for name in self.positions] if self.positions else named


class DriverStatement:
    """A Core statement compiled once per dialect, then run straight on a driver connection.

    For the bookkeeping writes that run for every task: Core's `execute()` spent as much
    CPU again as the statement's own round trip (185 µs against 93 µs for the worker's
    claim, measured), building a cache key, an execution context and a result object for
    a statement that never changes. Errors come out as SQLAlchemy's (`OperationalError`
    and the rest), and a connection the server closed is discarded, as with Core. Where
    the connection comes from: `driver_connections`.
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._by_dialect: dict[tuple[str, str], _DriverSQL] = {}

    def _for(self, dialect: Dialect) -> _DriverSQL:
        key = (dialect.name, dialect.driver)
        driver_sql = self._by_dialect.get(key)
        if driver_sql is None:
            compiled = self.statement.compile(dialect=dialect)
            if compiled.post_compile_params:  # e.g. IN with a list: SQLAlchemy would expand it
                raise ValueError(f"not runnable as driver SQL: {compiled.string}")
            binds = {name: bind for bind, name in compiled.bind_names.items()}
            # The dialect's own types: SQLite stores datetimes as text in SQLAlchemy's format.
            processors = {
                name: dialect.type_descriptor(bind.type).bind_processor(dialect)
                for name, bind in binds.items()
            }
            driver_sql = self._by_dialect[key] = _DriverSQL(
                sql=compiled.string,
                constants={n: b.effective_value for n, b in binds.items() if not b.required},
                processors={name: process for name, process in processors.items() if process},
                positions=tuple(compiled.positiontup) if compiled.positional else None,
            )
        return driver_sql

    def run(self, engine: Engine, values: dict[str, Any]) -> tuple | None:
        """Execute and commit in a transaction of its own; return the first row, if any."""
        dialect = engine.dialect
        driver_sql = self._for(dialect)
        parameters = driver_sql.parameters(values)
        connections = driver_connections(engine)
        connection = None
        try:
            connection = connections.connection(engine)
            cursor = connection.cursor()
            try:
                cursor.execute(driver_sql.sql, parameters)
                row = cursor.fetchone() if cursor.description else None
            finally:
                cursor.close()
            connection.commit()  # autocommit on PostgreSQL already; SQLite needs it
            connections.release(connection)
            return row
        except dialect.loaded_dbapi.Error as error:
            gone = connection is not None and dialect.is_disconnect(error, connection, None)
            if connection is not None:
                connections.discard(connection, error, gone)
            raise DBAPIError.instance(
                driver_sql.sql,
                parameters,
                error,
                dialect.loaded_dbapi.Error,
                connection_invalidated=gone,
                dialect=dialect,
            ) from error
        except BaseException:  # a time limit, an interrupt: the connection's state is unknown
            if connection is not None:
                connections.discard(connection, None, gone=True)
            raise


class PooledConnections:
    """Driver connections checked out of the engine's pool for each statement (SQLite)."""

    def connection(self, engine: Engine) -> Any:
        """A pooled connection (SQLAlchemy's proxy, which the driver's calls pass through)."""
        return engine.raw_connection()

    def release(self, connection: Any) -> None:
        """Return the connection to its pool."""
        connection.close()

    def discard(self, connection: Any, error: BaseException | None, gone: bool) -> None:
        """Return the connection after a failure; one that may be broken is thrown away."""
        if gone:
            connection.invalidate(error)
        connection.close()


class HeldConnections:
    """One driver connection per thread for an engine's DriverStatements, kept open between them.

    Checking a connection out of the pool and back in cost as much CPU as the statement
    on it (half of DriverStatement.run's samples in a worker, profiled). These connections
    are detached from the pool: each is one more server connection per thread that runs
    DriverStatements (a pool process, a gunicorn thread), closed when its thread ends or
    the engine is disposed. One the server closed while it sat idle is replaced before
    use, as the pool's checkout would (`server_spoke`); a forked child opens its own.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards `opened` between threads
        self._start_afresh()

    def _start_afresh(self) -> None:
        self.pid = os.getpid()
        self.local = threading.local()  # a thread that ends drops, and so closes, its own
        self.opened: weakref.WeakSet[Any] = weakref.WeakSet()  # every thread's, to dispose

    def connection(self, engine: Engine) -> Any:
        """This thread's driver connection to the engine's database, opened if need be."""
        if self.pid != os.getpid():
            # Forked: the parent's connections are its own (psycopg2 does not close a
            # connection a child drops), so the child must neither use nor close them.
            self._start_afresh()
        connection = getattr(self.local, "connection", None)
        if connection is not None and (connection.closed or server_spoke(connection)):
            self.discard(connection, None, gone=True)  # the server closed it, or spoke
            connection = None
        if connection is None:
            pooled = engine.raw_connection()
            pooled.detach()
            connection = self.local.connection = pooled.dbapi_connection
            with self.lock:
                self.opened.add(connection)
        return connection

    def release(self, connection: Any) -> None:
        """Keep the connection for this thread's next statement."""

    def discard(self, connection: Any, error: BaseException | None, gone: bool) -> None:
        """After a failure: close the connection if it may be broken, else keep it.

        Autocommit leaves no transaction behind a failed statement, so a connection that
        is still up serves the next one.
        """
        if gone:
            self.local.connection = None
            close_quietly(connection)

    def close_all(self, *_: Any) -> None:
        """Close every thread's connection: the engine was disposed (in this process)."""
        with self.lock:
            opened = list(self.opened) if self.pid == os.getpid() else []
            self._start_afresh()
        for connection in opened:
            close_quietly(connection)


def close_quietly(connection: Any) -> None:
    """Close a driver connection that may already be broken; errors are of no interest."""
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - a broken connection is being thrown away
        log.debug("closing a driver connection failed", exc_info=True)


_held_by_engine: "weakref.WeakKeyDictionary[Engine, HeldConnections]" = weakref.WeakKeyDictionary()
_held_lock = threading.Lock()
_pooled = PooledConnections()


def driver_connections(engine: Engine) -> HeldConnections | PooledConnections:
    """Where DriverStatements on this engine get connections: held ones on PostgreSQL.

    SQLite gains little, and an in-memory SQLite database lives in its pool's one
    connection, which must stay there.
    """
    if engine.dialect.name != "postgresql":
        return _pooled
    held = _held_by_engine.get(engine)
    if held is None:
        with _held_lock:
            held = _held_by_engine.get(engine)
            if held is None:
                held = _held_by_engine[engine] = HeldConnections()
                event.listen(engine, "engine_disposed", held.close_all)
    return held
