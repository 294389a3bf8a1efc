"""The User model."""

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from project import db


class User(db.Model):
    """A registered user; username and email are each unique."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    email: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    # Set by the send_welcome task, queued when the user is created.
    welcomed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def __init__(self, username: str, email: str) -> None:
        self.username = username
        self.email = email

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username!r}>"
