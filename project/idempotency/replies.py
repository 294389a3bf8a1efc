"""`@idempotent`: a POST retried with the same `Idempotency-Key` gets the first reply again.

Behaves as the IETF httpapi draft and Stripe describe: the same key with the same body
within 24 hours is answered with the stored first reply (`Idempotent-Replayed: true`)
and does nothing again; the same key with another body is refused with 422. The key's
row is inserted in the request's transaction before the view runs, so a concurrent
request with the same key waits on it and then replays the reply committed with it.
"""

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from flask import Response, current_app, g, request
from sqlalchemy import Row, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from project import db
from project.errors import Problem
from project.idempotency import KEY_HEADER, KEY_PATTERN, REPLAYED_HEADER
from project.idempotency.models import IdempotentReply
from project.tasks.models import utc_now

RETENTION = timedelta(hours=24)


def _sha256(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def key_scope() -> str:
    """Whose keys these are: the API token's name once requests carry one, else anyone's."""
    return str(g.get("api_token_name", ""))


def request_fingerprint() -> str:
    """Hash what makes two requests "the same": method, path and the body's JSON value."""
    body = request.get_json(silent=True)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _sha256(request.method, request.path, canonical)


def _claim(key_hash: str, fingerprint: str) -> bool:
    """Insert the key's row in the current transaction; False if the key is already taken."""
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(IdempotentReply)
        .values(key_hash=key_hash, request_hash=fingerprint, created_at=utc_now())
        .on_conflict_do_nothing(index_elements=["key_hash"])
        .returning(IdempotentReply.key_hash)
    )
    return db.session.execute(statement).scalar() is not None


def _stored(key_hash: str) -> Row | None:
    """Return the key's stored reply, after deleting it if older than the retention period."""
    db.session.execute(
        delete(IdempotentReply).where(
            IdempotentReply.key_hash == key_hash,
            IdempotentReply.created_at < utc_now() - RETENTION,
        )
    )
    return db.session.execute(
        select(
            IdempotentReply.request_hash,
            IdempotentReply.status,
            IdempotentReply.body,
            IdempotentReply.location,
        ).where(IdempotentReply.key_hash == key_hash)
    ).first()


def _replay(row: Row) -> Response:
    response = Response(row.body, status=row.status, mimetype="application/json")
    if row.location:
        response.headers["Location"] = row.location
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _reply_to_repeat(key: str) -> Response | None:
    """Claim the key for this request, or return the reply a request with it already got."""
    if not re.fullmatch(KEY_PATTERN, key):
        raise Problem(
            400,
            "Bad Request",
            f"{KEY_HEADER} must be 1 to 255 visible ASCII characters.",
            "bad-request",
        )
    key_hash, fingerprint = _sha256(key_scope(), key), request_fingerprint()
    while not _claim(key_hash, fingerprint):
        row = _stored(key_hash)
        if row is None:
            continue  # expired and deleted, or rolled back meanwhile: claim it now
        if row.request_hash != fingerprint:
            raise Problem(
                422,
                "Unprocessable Content",
                f"This {KEY_HEADER} was used with a different request; use a new key.",
                "idempotency-key-reused",
            )
        if row.status is None:  # cannot be seen committed; kept as a guard
            raise Problem(409, "Conflict", "A request with this key is in progress.", "conflict")
        return _replay(row)
    g.idempotency_key_hash = key_hash
    return None


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer a retried POST (same `Idempotency-Key`, same body) with its first reply.

    Commits the view's work together with the stored reply, so the view flushes and
    never commits itself. Without the header the view's work is committed as it is.
    Put it right under the route decorator.
    """

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(KEY_HEADER)
        if key is not None and (replay := _reply_to_repeat(key)) is not None:
            return replay
        response = current_app.make_response(view(*args, **kwargs))
        if key is not None:
            db.session.execute(
                update(IdempotentReply)
                .where(IdempotentReply.key_hash == g.idempotency_key_hash)
                .values(
                    status=response.status_code,
                    body=response.get_data(as_text=True),
                    location=response.headers.get("Location"),
                )
            )
        db.session.commit()
        return response

    wrapper.idempotent = True  # type: ignore[attr-defined]  # read by project/openapi.py
    return wrapper
