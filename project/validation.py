"""Reading and checking JSON request bodies and query parameters."""

import json
import math
from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest

from project.errors import validation_problem

# Larger magnitudes are almost surely mistakes or abuse, and huge integers cost CPU to convert.
MAX_INTEGER_DIGITS = 300


def json_object() -> dict[str, Any]:
    """Return the body as a JSON object: 415 if not JSON, 400 if malformed, 422 if no object."""
    try:
        body = request.get_json()  # raises 415 / 400, answered as problems
    except RecursionError:
        raise BadRequest("The JSON body is nested too deeply.") from None
    try:
        # Lone surrogates ("\ud800") are valid JSON escapes but not text any database stores.
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise BadRequest("The JSON body contains text that is not valid Unicode.") from None
    if not isinstance(body, dict):
        raise validation_problem({"body": "must be a JSON object"})
    return body


def finite_number(body: dict[str, Any], field: str, errors: dict[str, str]) -> float | int | None:
    """Return `body[field]` if it is a finite JSON number, else record why in `errors`."""
    if field not in body:
        errors[field] = "is required"
        return None
    value = body[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors[field] = "must be a number"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        errors[field] = "must be a finite number"
        return None
    if isinstance(value, int) and abs(value) >= 10**MAX_INTEGER_DIGITS:
        errors[field] = f"must have fewer than {MAX_INTEGER_DIGITS} digits"
        return None
    return value


def query_int(name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    """Read an integer query parameter within [low, high], or raise 422 naming it."""
    raw = request.args.get(name)
    if raw is None:
        return default
    bound = f"between {low} and {high}" if high is not None else f"at least {low}"
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise validation_problem({name: f"must be a whole number {bound}"})
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise validation_problem({name: f"must be {bound}"})
    return value


def query_seconds(name: str, high: float) -> float:
    """Read a number of seconds in [0, high] from the query string (0 if absent), or 422."""
    raw = request.args.get(name)
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= high:  # also rejects NaN
        raise validation_problem({name: f"must be a number of seconds from 0 to {high:g}"})
    return value
