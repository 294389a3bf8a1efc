"""Parallel creations of one username through gunicorn: one 201, the rest 409, no 5xx."""

import threading
from collections import Counter

import pytest
from flask import Flask
from sqlalchemy import text

from project import db
from tests.support import http, report

RACERS = 50


def test_parallel_creations_of_one_username_get_one_201(
    request: pytest.FixtureRequest, server: str, app: Flask
) -> None:
    barrier = threading.Barrier(RACERS)
    statuses: list[int] = []

    def racer(n: int) -> None:
        barrier.wait()
        body = {"username": "race", "email": f"racer{n}@example.com"}
        statuses.append(http("POST", f"{server}/users/", body)[0])

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = Counter(statuses)
    report(
        request,
        f"username race: requests={RACERS} created={counts[201]} conflicts={counts[409]} "
        f"server_errors={sum(n for status, n in counts.items() if status >= 500)}",
    )
    assert counts == {201: 1, 409: RACERS - 1}
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM users")).scalar_one() == 1
