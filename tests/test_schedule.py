"""Scheduled work: purge_tasks against a real worker, and real beats sharing one lock."""

import signal
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from flask import Flask
from sqlalchemy import func, insert, select

from harness.processes import Process, start_beat, wait_for
from project import db
from project.idempotency.models import IdempotentReply
from project.tasks.models import FAILURE, PENDING, REVOKED, STARTED, SUCCESS, TaskRecord, utc_now
from project.tasks.tasks import purge_tasks
from tests.support import report

PURGE = "project.tasks.tasks.purge_tasks"


def add_record(state: str, finished_days_ago: float | None, created_days_ago: float = 40) -> str:
    """Insert a task record as the worker would have left it; return its id."""
    task_id = str(uuid.uuid4())
    now = utc_now()
    finished = None if finished_days_ago is None else now - timedelta(days=finished_days_ago)
    db.session.execute(
        insert(TaskRecord).values(
            id=task_id,
            name="project.users.tasks.divide",
            args=[1, 2],
            state=state,
            created_at=now - timedelta(days=created_days_ago),
            published_at=now - timedelta(days=created_days_ago),
            finished_at=finished,
        )
    )
    return task_id


def test_purge_deletes_only_records_finished_before_the_retention(
    app: Flask, worker: Process
) -> None:
    with app.app_context():
        purged = [add_record(SUCCESS, 31), add_record(FAILURE, 45), add_record(REVOKED, 30.5)]
        kept = [
            add_record(SUCCESS, 29),  # within the 30 days
            add_record(PENDING, None),  # queued 40 days ago and never finished: still to come
            add_record(STARTED, None),
        ]
        for key, hours_ago in (("old", 25), ("new", 23)):
            db.session.add(
                IdempotentReply(
                    key_hash=key.ljust(64, "0"),
                    request_hash="0" * 64,
                    created_at=utc_now() - timedelta(hours=hours_ago),
                )
            )
        db.session.commit()
        backend = app.extensions["celery"].backend
        backend.client.set(backend.get_key_for_task(purged[0]), "{}")  # a result outlived

        counts = purge_tasks.delay().get(timeout=30)

        assert counts == {"task_records": 3, "idempotent_replies": 1}
        left = set(db.session.scalars(select(TaskRecord.id).where(TaskRecord.name != PURGE)))
        assert left == set(kept)
        assert db.session.scalars(select(IdempotentReply.key_hash)).all() == ["new".ljust(64, "0")]
        assert not backend.client.exists(backend.get_key_for_task(purged[0]))


@pytest.fixture
def beat_env(app: Flask, migrated: dict[str, str]) -> dict[str, str]:
    """Settings for beats of this test alone: their own queue, hence their own lock."""
    return {
        **migrated,
        "CELERY_TASK_DEFAULT_QUEUE": f"beat-{uuid.uuid4().hex[:8]}",
        "TASK_PURGE_INTERVAL_SECONDS": "2",
        "BEAT_MAX_LOOP_INTERVAL": "1",
        "BEAT_LOCK_TIMEOUT_SECONDS": "5",
    }


def purges_sent(app: Flask) -> int:
    """Count the purge_tasks runs beat published (each has a record)."""
    with app.app_context():
        count = select(func.count()).select_from(TaskRecord).where(TaskRecord.name == PURGE)
        return db.session.scalar(count)


def leader_of(beats: list[Process]) -> Process:
    """Return the one beat that holds the lock (it says so in its log)."""
    return wait_for(
        lambda: next((b for b in beats if "beat: Acquired lock" in b.output()), None),
        30,
        "a beat to take the lock",
    )


def test_one_beat_sends_however_many_run_and_another_takes_over(
    request: pytest.FixtureRequest, app: Flask, beat_env: dict[str, str], log_dir: Path
) -> None:
    broker = redis.Redis.from_url(beat_env["CELERY_BROKER_URL"])
    beats = [start_beat(beat_env, log_dir) for _ in range(2)]
    try:
        leader = leader_of(beats)
        standby = next(b for b in beats if b is not leader)
        before, started = purges_sent(app), time.monotonic()
        time.sleep(20)
        sent, elapsed = purges_sent(app) - before, time.monotonic() - started
        expected = elapsed / 2
        report(
            request, f"beat x2, every 2 s for {elapsed:.0f} s: expected≈{expected:.0f} sent={sent}"
        )
        assert expected - 2 <= sent <= expected + 2  # two senders would make it about twice

        # The leader dies without releasing its lock: the standby takes over once it expires.
        leader.stop(signal.SIGKILL)
        killed = time.monotonic()
        standby.wait_for_output("beat: Acquired lock", timeout=15)
        takeover = time.monotonic() - killed
        count = purges_sent(app)
        wait_for(lambda: purges_sent(app) > count, 10, "the new leader to send")
        report(request, f"beat failover: takeover_s={takeover:.1f} (lock TTL 5 s)")
        assert takeover <= 5 + 1 + 2  # the lock's TTL, one loop, and a little slack

        # A beat stopped for 5 intervals, then started, runs the missed work once, not 5 times.
        standby.stop()
        time.sleep(10)
        before = purges_sent(app)
        beats.append(restarted := start_beat(beat_env, log_dir))
        restarted.wait_for_output("beat: Acquired lock", timeout=15)
        time.sleep(3)
        burst = purges_sent(app) - before
        report(request, f"beat restarted after 10 s away: sent={burst} in its first 3 s")
        assert 1 <= burst <= 3
    finally:
        for beat in beats:
            beat.stop()
        broker.delete(beat_env["CELERY_TASK_DEFAULT_QUEUE"])
        for key in broker.scan_iter(f"redbeat:{beat_env['CELERY_TASK_DEFAULT_QUEUE']}:*"):
            broker.delete(key)
