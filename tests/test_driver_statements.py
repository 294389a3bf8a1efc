"""Driver SQL (DriverStatement) writes what Core writes, on PostgreSQL and on SQLite."""

import gc
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import bindparam, create_engine, func, insert, literal, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, OperationalError

from project.config import normalize_database_url
from project.database import DriverStatement, make_bookkeeping_engine
from project.tasks.lifecycle import CLAIM, OUTCOMES, STATE
from project.tasks.models import TaskRecord
from tests.support import Databases

records = TaskRecord.__table__
NOW = datetime(2026, 12, 6, 7, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(
    request: pytest.FixtureRequest, databases: Databases, tmp_path: Path
) -> Iterator[Engine]:
    """A bookkeeping engine, as the app makes it, on a fresh database with the records table."""
    url = databases.create() if request.param == "postgresql" else f"sqlite:///{tmp_path}/x.db"
    main = create_engine(normalize_database_url(url))
    records.create(main)
    bookkeeping = make_bookkeeping_engine(main)
    yield bookkeeping
    bookkeeping.dispose()
    main.dispose()


def queued(engine: Engine) -> str:
    """Insert a queued task's record through Core, created at NOW; return its id."""
    task_id = str(uuid.uuid4())
    with engine.begin() as connection:
        connection.execute(
            insert(records).values(id=task_id, name="divide", args=[1, 2], created_at=NOW)
        )
    return task_id


def test_claims_and_outcomes_are_stored_as_core_stores_them(engine: Engine) -> None:
    done, failed = queued(engine), queued(engine)

    assert CLAIM.run(engine, {"task_id": done, "now": NOW}) == (1,)
    assert CLAIM.run(engine, {"task_id": done, "now": NOW}) == (2,)  # a redelivery counts
    OUTCOMES["SUCCESS"].run(engine, {"task_id": done, "now": NOW, "result": {"x": [1, 2]}})
    OUTCOMES["FAILURE"].run(
        engine, {"task_id": failed, "now": NOW, "error": {"type": "E", "message": "m"}}
    )

    with engine.connect() as connection:
        row = connection.execute(select(records).where(records.c.id == done)).one()
        other = connection.execute(select(records).where(records.c.id == failed)).one()
        # The very text (SQLite) or value (PostgreSQL) Core wrote for the same datetime.
        stored = connection.execute(
            text("SELECT created_at, started_at, finished_at FROM task_records WHERE id = :id"),
            {"id": done},
        ).one()
    assert (row.state, row.deliveries, row.result, row.error) == ("SUCCESS", 2, {"x": [1, 2]}, None)
    assert (other.state, other.error, other.result) == (
        "FAILURE",
        {"type": "E", "message": "m"},
        None,
    )
    assert stored.started_at == stored.created_at and stored.finished_at == stored.created_at
    assert row.finished_at.replace(tzinfo=UTC) == NOW
    assert STATE.run(engine, {"task_id": done}) == ("SUCCESS",)
    assert STATE.run(engine, {"task_id": "no such task"}) is None
    # A finished task is not claimed again (its duplicate delivery is refused).
    assert CLAIM.run(engine, {"task_id": done, "now": NOW}) is None


def test_errors_come_out_as_sqlalchemy_errors() -> None:
    unreachable = create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/nothing")
    with pytest.raises(OperationalError):  # what the worker's retry catches
        STATE.run(unreachable, {"task_id": "x"})
    unreachable.dispose()


def test_a_statement_sqlalchemy_would_expand_is_refused(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/x.db")
    records.create(engine)
    expanding = DriverStatement(
        select(records.c.id).where(records.c.id.in_(bindparam("ids", expanding=True)))
    )
    with pytest.raises(ValueError, match="not runnable as driver SQL"):
        expanding.run(engine, {"ids": ["a"]})
    engine.dispose()


BACKEND_PID = DriverStatement(select(func.pg_backend_pid()))


@pytest.fixture
def postgres_engine(databases: Databases) -> Iterator[Engine]:
    """A bookkeeping engine on a fresh PostgreSQL database."""
    main = create_engine(normalize_database_url(databases.create()))
    bookkeeping = make_bookkeeping_engine(main)
    yield bookkeeping
    bookkeeping.dispose()
    main.dispose()


def backend_pid(engine: Engine) -> int:
    """The server process of this thread's held connection."""
    return BACKEND_PID.run(engine, {})[0]


def test_postgres_connections_are_held_outside_the_pool(postgres_engine: Engine) -> None:
    first = backend_pid(postgres_engine)
    assert backend_pid(postgres_engine) == first  # the same connection, kept open
    assert postgres_engine.pool.checkedout() == 0  # never counted against the pool's size
    with postgres_engine.connect() as pooled:  # the pool's own is another one
        assert pooled.execute(select(func.pg_backend_pid())).scalar() != first


def test_a_failed_statement_keeps_the_connection(postgres_engine: Engine) -> None:
    first = backend_pid(postgres_engine)
    with pytest.raises(DataError):  # division by zero: the server answered, still connected
        DriverStatement(select(literal(1) / literal(0))).run(postgres_engine, {})
    assert backend_pid(postgres_engine) == first


def test_a_thread_that_ends_closes_its_connection(postgres_engine: Engine) -> None:
    pids: list[int] = []
    thread = threading.Thread(target=lambda: pids.append(backend_pid(postgres_engine)))
    thread.start()
    thread.join()
    gc.collect()
    wait_until_gone(postgres_engine, pids[0])


def test_a_connection_the_server_closed_is_replaced_before_use(postgres_engine: Engine) -> None:
    first = backend_pid(postgres_engine)
    with postgres_engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    wait_until_gone(postgres_engine, first)
    assert backend_pid(postgres_engine) != first  # no error: replaced before use


def _alive(engine: Engine, pid: int) -> bool:
    with engine.connect() as connection:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
        return connection.execute(query, {"pid": pid}).scalar() == 1


def wait_until_gone(engine: Engine, pid: int) -> None:
    """Wait (up to 5 s) until the server process `pid` has ended its session."""
    deadline = time.monotonic() + 5
    while _alive(engine, pid):
        assert time.monotonic() < deadline, f"server process {pid} still has its session"
        time.sleep(0.02)


@pytest.mark.parametrize("dispose_first", [True, False], ids=["disposed", "not-disposed"])
def test_a_forked_child_leaves_its_parents_connection_alone(
    postgres_engine: Engine, dispose_first: bool
) -> None:
    parent = backend_pid(postgres_engine)
    child = os.fork()
    if child == 0:  # the child: its own connection (after a dispose as forking.py does, or not)
        try:
            if dispose_first:
                postgres_engine.dispose(close=False)
            code = 0 if backend_pid(postgres_engine) != parent else 1
            postgres_engine.dispose()
            gc.collect()  # the parent's connection, dropped here, must not be closed either
        except BaseException:  # noqa: BLE001 - any failure is the exit code's to report
            code = 2
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # Had the child closed the inherited socket, the server would have ended this session.
    assert _alive(postgres_engine, parent)
    assert backend_pid(postgres_engine) == parent


def test_dispose_closes_the_held_connections(postgres_engine: Engine) -> None:
    held = backend_pid(postgres_engine)
    postgres_engine.dispose()
    wait_until_gone(postgres_engine, held)
