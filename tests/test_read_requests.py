"""GET requests read without a transaction, and go back to one before they write.

What PostgreSQL itself says tells: `now()` is when the transaction began, so it equals
`statement_timestamp()` only for a statement that is its own transaction (no BEGIN sent).
"""

import threading
import uuid

import psycopg2
import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError

from harness.processes import wait_for
from project import db
from project.config import normalize_database_url
from project.read_requests import read_safe_requests_without_transactions
from project.users.models import User

IN_TRANSACTION = select(func.now() < func.statement_timestamp())


def in_transaction() -> bool:
    """Whether the session's statements run in a transaction that began before this one."""
    return db.session.scalar(IN_TRANSACTION)


def usernames() -> list[str]:
    return list(db.session.scalars(select(User.username).order_by(User.username)))


@pytest.fixture
def probe(app: Flask) -> FlaskClient:
    """A client of the app with routes that report what their statements ran in."""

    def reads() -> object:
        return jsonify([in_transaction(), in_transaction()])

    def writes_then_fails() -> object:
        before = in_transaction()
        db.session.add(User(username="kept-only-if-committed", email="k@example.com"))
        db.session.flush()
        during = in_transaction()
        db.session.add(User(username="ada", email="clash@example.com"))
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
        return jsonify([before, during])

    def writes() -> object:
        db.session.add(User(username="grace", email="grace@example.com"))
        db.session.commit()
        return jsonify(in_transaction())

    def locks() -> object:
        db.session.scalars(select(User).with_for_update()).all()
        return jsonify(in_transaction())

    def streams() -> object:
        rows = db.session.scalars(select(User.username).execution_options(yield_per=1)).all()
        return jsonify(rows)

    def runs_text() -> object:
        db.session.execute(text("SELECT 1"))
        return jsonify(in_transaction())

    for rule, view in [
        ("/probe/reads", reads),
        ("/probe/writes-then-fails", writes_then_fails),
        ("/probe/writes", writes),
        ("/probe/locks", locks),
        ("/probe/streams", streams),
        ("/probe/text", runs_text),
    ]:
        app.add_url_rule(rule, view_func=view, methods=["GET", "POST"])
    with app.app_context():
        db.session.add(User(username="ada", email="ada@example.com"))
        db.session.commit()
    return app.test_client()


def test_a_get_request_reads_without_begin_and_a_post_request_in_a_transaction(
    probe: FlaskClient,
) -> None:
    assert probe.get("/probe/reads").get_json() == [False, False]
    assert probe.post("/probe/reads").get_json() == [True, True]
    # The connection the GET used went back to the pool ready for transactions again.
    assert probe.post("/probe/reads").get_json() == [True, True]


def test_a_get_request_that_writes_does_it_in_a_transaction_that_can_roll_back(
    app: Flask, probe: FlaskClient
) -> None:
    # Reads first without one, then the write and what follows in one transaction ...
    assert probe.get("/probe/writes-then-fails").get_json() == [False, True]
    # ... so the rollback took back the first insert: nothing was committed on its own.
    with app.app_context():
        assert usernames() == ["ada"]
    # A GET that writes and commits keeps its write; afterwards it reads in autocommit again.
    assert probe.get("/probe/writes").get_json() is False
    with app.app_context():
        assert usernames() == ["ada", "grace"]


@pytest.mark.parametrize(
    "path", ["/probe/locks", "/probe/text"], ids=["select for update", "sql text"]
)
def test_a_get_request_that_locks_rows_or_runs_sql_text_runs_in_a_transaction(
    probe: FlaskClient, path: str
) -> None:
    assert probe.get(path).get_json() is True


def test_a_get_request_can_stream_rows_with_a_server_side_cursor(probe: FlaskClient) -> None:
    # psycopg2 refuses a named cursor in autocommit; the request takes a transaction for it.
    response = probe.get("/probe/streams")
    assert response.status_code == 200
    assert response.get_json() == ["ada"]


@pytest.mark.parametrize(("isolation_level", "in_one"), [(None, False), ("REPEATABLE READ", True)])
def test_an_engine_set_to_repeatable_read_keeps_transactions_for_get_requests(
    migrated: dict[str, str], isolation_level: str | None, in_one: bool
) -> None:
    options = {"isolation_level": isolation_level} if isolation_level else {}
    engine = create_engine(normalize_database_url(migrated["DATABASE_URL"]), **options)
    read_safe_requests_without_transactions(engine)
    try:
        with Flask(__name__).test_request_context(method="GET"), engine.connect() as connection:
            connection.scalar(select(1))
            # One snapshot for the whole request asks for one transaction.
            assert connection.scalar(IN_TRANSACTION) is in_one
    finally:
        engine.dispose()


def test_a_get_request_can_still_ask_for_autocommit(migrated: dict[str, str]) -> None:
    engine = create_engine(normalize_database_url(migrated["DATABASE_URL"]))
    read_safe_requests_without_transactions(engine)
    try:
        with Flask(__name__).test_request_context(method="GET"), engine.connect() as connection:
            # VACUUM refuses to run in a transaction: the caller's AUTOCOMMIT stays.
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM users"))
    finally:
        engine.dispose()


def test_a_long_poll_holds_no_transaction_open_while_it_waits(
    app_with, migrated: dict[str, str]
) -> None:
    # Queued where no worker reads, so the task stays PENDING and the GET waits its 3 s.
    client = app_with(CELERY_TASK_DEFAULT_QUEUE=f"long-poll-{uuid.uuid4().hex}").test_client()
    task_id = client.post("/tasks/divide", json={"x": 1, "y": 2}).get_json()["id"]
    answers = []
    poll = threading.Thread(target=lambda: answers.append(client.get(f"/tasks/{task_id}?wait=3")))
    poll.start()
    observer = psycopg2.connect(migrated["DATABASE_URL"])
    observer.autocommit = True
    try:

        def poll_backend_state() -> str | None:
            with observer.cursor() as cursor:
                cursor.execute(
                    "SELECT state FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query LIKE 'SELECT task_records.%%' AND position(%s in query) > 0",
                    (task_id,),  # psycopg2 writes the values into the statement's text
                )
                row = cursor.fetchone()
            return row and row[0]

        # It read the record and waits on Redis: its connection is idle, not in a transaction.
        assert wait_for(poll_backend_state, timeout=2.5, what="the long poll's read") == "idle"
    finally:
        observer.close()
        poll.join()
    assert answers[0].get_json()["state"] == "PENDING"
