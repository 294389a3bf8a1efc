"""GET, HEAD and OPTIONS requests read without a transaction, until they write.

psycopg2 opens a transaction with a `BEGIN` round trip before a connection's first
statement, and the pool ends it with a `ROLLBACK` one: half of a `GET /users/<id>`'s four
round trips to PostgreSQL, for reads that need no transaction. Under READ COMMITTED (the
default) each statement sees what was committed when it started, in a transaction or
not, so a request of a safe method runs its connection in autocommit: its reads are the
same, two round trips fewer.

A safe request may still write (a "last seen" stamp, say), or lock rows: before the first
statement that is not a plain SELECT (an INSERT, UPDATE or DELETE, a `FOR UPDATE`, a
server-side cursor, SQL text), the connection goes back to transactions, so from that
statement on the request commits or rolls back as any other. An engine set to another
isolation level (REPEATABLE READ: one snapshot for the whole request) keeps transactions.
"""

from typing import Any

from flask import has_request_context, request
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExecutionContext
from sqlalchemy.sql.selectable import GenerativeSelect

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READING = "reads_in_autocommit"  # set in a pooled connection's info while it reads so


def is_plain_read(context: ExecutionContext) -> bool:
    """Whether a statement only reads and needs no transaction around it."""
    if context.isinsert or context.isupdate or context.isdelete:
        return False
    statement = getattr(context.compiled, "statement", None)
    if not isinstance(statement, GenerativeSelect):
        return False  # SQL text, DDL, a function call: it may write
    # Row locks last a transaction. (SQLAlchemy keeps FOR UPDATE only in this attribute.)
    if statement._for_update_arg is not None:
        return False
    # psycopg2 opens server-side cursors (yield_per, stream_results) only in a transaction.
    return not context.execution_options.get("stream_results")


def read_safe_requests_without_transactions(engine: Engine) -> None:
    """Run the reads of GET, HEAD and OPTIONS requests on `engine` in autocommit (PostgreSQL)."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "checkout")
    def autocommit_for_safe_requests(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if not has_request_context() or request.method not in SAFE_METHODS:
            return
        if engine.dialect.default_isolation_level != "READ COMMITTED":
            return  # REPEATABLE READ or stricter: the request's reads share one snapshot
        dbapi_connection.autocommit = True  # no round trip: psycopg2 only stops sending BEGIN
        record.info[READING] = True

    @event.listens_for(engine, "before_cursor_execute")
    def transaction_before_writing(
        connection: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: ExecutionContext,
        executemany: bool,
    ) -> None:
        info = connection.info
        if not info.get(READING) or is_plain_read(context):
            return
        if context.execution_options.get("isolation_level") == "AUTOCOMMIT":
            return  # asked for by the caller (VACUUM, CREATE DATABASE): leave it so
        del info[READING]
        # psycopg2 sends BEGIN before this statement: it and the rest are one transaction.
        cursor.connection.autocommit = False

    @event.listens_for(engine, "reset")
    def transactions_again(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
        # Before the pool's rollback, which then has nothing to roll back: no round trip.
        if record is not None and record.info.pop(READING, False):
            dbapi_connection.autocommit = False
