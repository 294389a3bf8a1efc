"""Validation of user payloads."""

import re
from typing import Any

from project.errors import validation_problem

MAX_LENGTH = 128
# Plausible, not RFC 5322: one @, no spaces, a dot in the domain.
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def _text(body: dict[str, Any], field: str, errors: dict[str, str]) -> str | None:
    value = body.get(field)
    if value is None:
        errors[field] = "is required"
        return None
    if not isinstance(value, str):
        errors[field] = "must be a string"
        return None
    value = value.strip()
    if not value:
        errors[field] = "must not be blank"
    elif len(value) > MAX_LENGTH:
        errors[field] = f"must be at most {MAX_LENGTH} characters"
    elif "\x00" in value:
        errors[field] = "must not contain NUL characters"
    else:
        return value
    return None


def validate_user(body: dict[str, Any], partial: bool = False) -> dict[str, str]:
    """Return the cleaned username and email, or raise 422 naming each bad field."""
    errors: dict[str, str] = {}
    cleaned: dict[str, str] = {}
    fields = [f for f in ("username", "email") if not partial or f in body]
    if partial and not fields:
        raise validation_problem({"body": "give username, email or both"})
    for field in fields:
        value = _text(body, field, errors)
        if value is None:
            continue
        if field == "email":
            if not EMAIL_PATTERN.fullmatch(value):
                errors[field] = "must be an email address like name@example.com"
                continue
            # Addresses differ by case only in theory; treat them as one.
            value = value.lower()
        cleaned[field] = value
    if errors:
        raise validation_problem(errors)
    return cleaned
