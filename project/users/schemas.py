"""The users API's payloads: what a client sends and what it gets back."""

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from project.schemas import (
    MAX_ID,
    SPACE,
    PageQuery,
    clean_text,
    optional_not_nullable,
    trimmed_text,
)

MAX_LENGTH = 128  # the columns' size
# Plausible, not RFC 5322: one @, no spaces, a dot in the domain.
EMAIL = rf"[^@{SPACE}\x00]+@[^@{SPACE}\x00]+\.[^@{SPACE}.\x00]+"


def email_address(value: Any) -> str:
    """Accept a plausible email address; return it trimmed and lower-cased."""
    value = clean_text(value, MAX_LENGTH)
    if not re.fullmatch(EMAIL, value):
        raise PydanticCustomError("invalid", "must be an email address like name@example.com")
    # Addresses differ by case only in theory; treat them as one.
    return value.lower()


Username = trimmed_text(MAX_LENGTH)
Email = Annotated[
    str,
    PlainValidator(email_address),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": rf"^[{SPACE}]*(?=[^{SPACE}]{{1,{MAX_LENGTH}}}[{SPACE}]*$){EMAIL}[{SPACE}]*$",
            "description": f"An address like name@example.com, at most {MAX_LENGTH} characters; "
            "stored lower-cased.",
        }
    ),
]


class UserIn(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    email: Email


class UserPatch(BaseModel):
    """The fields of a user to change: one or both."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=optional_not_nullable({"minProperties": 1})
    )

    # None only when absent: an explicit null is refused like any other non-string.
    username: Username = None
    email: Email = None

    @model_validator(mode="after")
    def _some_field_given(self) -> "UserPatch":
        if not self.model_fields_set:
            raise PydanticCustomError("invalid", "give username, email or both")
        return self

    def changes(self) -> dict[str, str]:
        """Return the fields the client sent."""
        return self.model_dump(include=self.model_fields_set)


class UserOut(BaseModel):
    """A user as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str
    welcomed_at: datetime | None = Field(
        description="When the welcome task ran (queued on creation); null until then."
    )


class UserPageQuery(PageQuery):
    """Keyset pagination: `limit` users with an id greater than `after`."""

    after: int = Field(0, ge=0, le=MAX_ID, description="Show users with a greater id.")


class UserPage(BaseModel):
    """A page of users, by id; `next` is the next page's URL, null on the last."""

    items: list[UserOut]
    next: str | None
