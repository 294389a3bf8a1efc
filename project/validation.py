"""What no schema can say about a JSON body, checked before the schemas run."""

import json

from apiflask import APIFlask
from flask import current_app, request
from werkzeug.exceptions import BadRequest

from project.errors import validation_problem


def check_json_body() -> None:
    """Refuse a body the endpoint's schema cannot read: 415 not JSON, 400 malformed, 422 no object.

    Runs for endpoints declaring a JSON body (`@bp.input(Model)`); the parsed body is
    cached, so the schema reads it without parsing again.
    """
    if request.method == "OPTIONS":
        return  # Flask answers it itself; it matched some rule of the path, maybe a POST's
    view = current_app.view_functions.get(request.endpoint or "")
    if "body" not in getattr(view, "_spec", {}):
        return
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


def init_json_body_checks(app: APIFlask) -> None:
    """Check every JSON body before its endpoint's schema validates it."""
    app.before_request(check_json_body)
