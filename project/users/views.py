"""The users JSON API: create, read, update, delete and list with keyset pagination."""

from flask import Blueprint, Response, jsonify, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from project import db
from project.errors import Problem
from project.users.models import User
from project.users.schemas import validate_user
from project.validation import json_object, query_int

users_blueprint = Blueprint("users", __name__, url_prefix="/users")

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_ID = 2**31 - 1


def _conflicting_field(error: IntegrityError) -> str:
    """Name the unique field a failed insert or update clashed on."""
    diag = getattr(error.orig, "diag", None)  # psycopg2 names the constraint
    where = getattr(diag, "constraint_name", None) or str(error.orig)
    return "email" if where.endswith("_email") or "users.email" in where else "username"


def _commit_or_conflict() -> None:
    """Commit; a unique constraint violation becomes 409 naming the field."""
    try:
        db.session.commit()
    except IntegrityError as error:
        db.session.rollback()
        field = _conflicting_field(error)
        raise Problem(
            409,
            "Conflict",
            f"That {field} is already taken.",
            "conflict",
            errors={field: "is already taken"},
        ) from None


def _get_or_404(user_id: int) -> User:
    # Ids past the column's range cannot exist; asking the database would be an error.
    user = db.session.get(User, user_id) if user_id <= MAX_ID else None
    if user is None:
        raise Problem(404, "Not Found", f"There is no user {user_id}.", "not-found")
    return user


@users_blueprint.post("/")
def create_user() -> tuple[Response, int, dict[str, str]]:
    """Create a user from `{"username", "email"}`."""
    fields = validate_user(json_object())
    user = User(**fields)
    db.session.add(user)
    _commit_or_conflict()
    return jsonify(user.to_dict()), 201, {"Location": url_for("users.get_user", user_id=user.id)}


@users_blueprint.get("/")
def list_users() -> Response:
    """List users by id, `limit` at a time, starting after the id `after`."""
    limit = query_int("limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    after = query_int("after", 0, 0, MAX_ID)
    rows = db.session.scalars(
        select(User).where(User.id > after).order_by(User.id).limit(limit + 1)
    ).all()
    page = rows[:limit]
    next_url = None
    if len(rows) > limit:
        next_url = url_for("users.list_users", limit=limit, after=page[-1].id)
    return jsonify({"items": [user.to_dict() for user in page], "next": next_url})


@users_blueprint.get("/<int:user_id>")
def get_user(user_id: int) -> Response:
    """Return one user."""
    return jsonify(_get_or_404(user_id).to_dict())


@users_blueprint.patch("/<int:user_id>")
def update_user(user_id: int) -> Response:
    """Change a user's username and/or email."""
    user = _get_or_404(user_id)
    for field, value in validate_user(json_object(), partial=True).items():
        setattr(user, field, value)
    _commit_or_conflict()
    return jsonify(user.to_dict())


@users_blueprint.delete("/<int:user_id>")
def delete_user(user_id: int) -> tuple[str, int]:
    """Delete a user."""
    db.session.delete(_get_or_404(user_id))
    db.session.commit()
    return "", 204
