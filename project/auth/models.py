"""The API tokens: a name, a public lookup id and a hash of the secret, never the token."""

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from project import db
from project.tasks.models import utc_now


class ApiToken(db.Model):
    """A token issued by `flask tokens create NAME`; revoked ones stay, for the record."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    # The token's public half: finds the row, so the secret is compared in Python, in
    # constant time, rather than by an index lookup on the secret itself.
    lookup: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    # sha256 of the secret half. The secret is 256 random bits: a fast hash is enough.
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utc_now
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
