"""The stored first reply to each idempotency key."""

from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from project import db
from project.tasks.models import utc_now


class IdempotentReply(db.Model):
    """The reply to the first request that carried a key; only hashes of key and body."""

    __tablename__ = "idempotent_replies"

    # sha256 of the caller's scope and the key: the key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    # sha256 of method, path and the canonical JSON body: a reused key with another body is refused.
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=utc_now, index=True
    )
