"""Field types and payloads shared by every feature's schemas.

Each type validates (with the messages clients see) and documents itself (its JSON Schema
in `/openapi.json`) from the same constants, so a limit is written once.
"""

import math
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

# Larger magnitudes are almost surely mistakes or abuse, and huge integers cost CPU to convert.
MAX_INTEGER_DIGITS = 300
MAX_ID = 2**31 - 1  # the range of PostgreSQL's integer primary keys
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# What str.strip() trims (str.isspace()), spelled out: `\s` means less in JSON Schema's
# regexes than in Python's, and patterns must mean the same to clients and to this server.
SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid", message)


def finite_number(value: Any) -> int | float:
    """Accept a finite JSON number (not a boolean or a string), integers under 300 digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid("must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid("must be a finite number")
    if isinstance(value, int) and abs(value) >= 10**MAX_INTEGER_DIGITS:
        raise _invalid(f"must have fewer than {MAX_INTEGER_DIGITS} digits")
    return value


FiniteNumber = Annotated[
    int | float,
    PlainValidator(finite_number),
    # JSON Schema cannot limit an integer's digits without also limiting floats.
    WithJsonSchema(
        {
            "type": "number",
            "description": f"A finite JSON number (integers under {MAX_INTEGER_DIGITS} digits).",
        }
    ),
]


def clean_text(value: Any, max_length: int) -> str:
    """Return `value` trimmed if it is a string of 1 to `max_length` characters without NUL."""
    if not isinstance(value, str):
        raise _invalid("must be a string")
    value = value.strip()
    if not value:
        raise _invalid("must not be blank")
    if len(value) > max_length:
        raise _invalid(f"must be at most {max_length} characters")
    if "\x00" in value:
        raise _invalid("must not contain NUL characters")
    return value


def trimmed_text(max_length: int) -> Any:
    """A string type: 1 to `max_length` characters once trimmed (it is), without NUL."""
    # The same rule as a pattern, so generated clients and fuzzers know it exactly.
    pattern = (
        rf"^[{SPACE}]*[^{SPACE}\x00](?:[^\x00]{{0,{max_length - 2}}}[^{SPACE}\x00])?[{SPACE}]*$"
    )
    description = f"1 to {max_length} characters once surrounding spaces are trimmed (they are)."
    return Annotated[
        str,
        PlainValidator(lambda value: clean_text(value, max_length)),
        WithJsonSchema({"type": "string", "pattern": pattern, "description": description}),
    ]


def optional_not_nullable(extra: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Document optional fields without the `default: null` their type would not accept."""

    def adjust(schema: dict[str, Any]) -> None:
        for field in schema.get("properties", {}).values():
            field.pop("default", None)
        schema.update(extra)

    return adjust


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every error."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: dict[str, str] | None = Field(
        None, description="Field name → what is wrong with it (422 and 409)."
    )
    checks: dict[str, str] | None = Field(
        None, description="Readiness check → what is wrong and what to do (/readyz)."
    )


class LocationHeader(BaseModel):
    """The `Location` header of a response that created or queued something."""

    location: str = Field(alias="Location", description="The URL of what was created or queued.")


class PageQuery(BaseModel):
    """`limit`: how many items a page holds."""

    limit: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description="Page size.")
