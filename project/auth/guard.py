"""API_AUTH=required: every API request carries `Authorization: Bearer <token>`.

Public blueprints (the page, /docs, /openapi.json, health) stay open; every other
blueprint, including the ones a new feature adds, needs a token.
"""

import ipaddress

from flask import Flask, Response, current_app, g, request
from flask_httpauth import HTTPTokenAuth

from project.auth.tokens import token_name
from project.errors import problem_response

# Blueprints anyone may reach: APIFlask's "openapi" serves /openapi.json.
PUBLIC_BLUEPRINTS = frozenset({"pages", "docs", "health", "openapi"})
CREATE_COMMAND = "flask tokens create NAME"

bearer = HTTPTokenAuth(scheme="Bearer")


def is_public_request() -> bool:
    """Whether the request goes to a public blueprint, or to /metrics from METRICS_ALLOW.

    A path that matches no route is not public either: without a token it answers 401,
    not 404 or 405, so the API's routes cannot be mapped without one.
    """
    if request.blueprint in PUBLIC_BLUEPRINTS:
        return True
    return request.blueprint == "metrics" and is_allowed_scraper(request.remote_addr)


def is_allowed_scraper(address: str | None) -> bool:
    """Whether the client address is in METRICS_ALLOW (a Prometheus on the private network)."""
    networks = current_app.config["METRICS_ALLOW"]
    if not networks or not address:
        return False
    client = ipaddress.ip_address(address)
    return any(client in network for network in networks)


@bearer.verify_token
def verify_token(token: str) -> str | None:
    """Return the token's name if it is active; remember it for this request."""
    name = token_name(token) if token else None
    if name is not None:
        g.api_token_name = name
    return name


@bearer.error_handler
def unauthorized(status: int) -> tuple[Response, int]:
    """401 problem+json; the header says whether a token was sent and refused (RFC 6750)."""
    if request.headers.get("Authorization"):
        detail = "The API token is not valid: unknown, revoked or mistyped."
        challenge = 'Bearer realm="api", error="invalid_token"'
    else:
        detail = (
            "This endpoint needs an API token (`Authorization: Bearer <token>`); "
            f"create one with `{CREATE_COMMAND}`."
        )
        challenge = 'Bearer realm="api"'
    response, status = problem_response(401, "Unauthorized", detail, "unauthorized")
    response.headers["WWW-Authenticate"] = challenge
    return response, status


# Flask-HTTPAuth parses the header and answers 401; used as a check before every request.
_check_token = bearer.login_required(lambda: None)


def require_api_token() -> Response | None:
    """Refuse an API request without an active token; let public ones through."""
    if is_public_request():
        return None
    return _check_token()


def init_api_auth(app: Flask) -> None:
    """Require tokens on the API when API_AUTH is `required`."""
    if app.config["API_AUTH"] == "required":
        app.before_request(require_api_token)
