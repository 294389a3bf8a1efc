"""Rate limits on the API: RATE_LIMIT_WRITES and RATE_LIMIT_READS, per token or address.

Counted in Redis (the broker's), so every gunicorn process and container shares them.
When Redis cannot be reached, each process counts in its own memory until it is back
(Flask-Limiter's in-memory fallback): limits stay roughly in force, no request fails.
"""

import math
import time

from flask import Flask, Response, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit
from limits.storage import RedisStorage

from project.auth.guard import is_public_request
from project.errors import Problem, handle_problem

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
READ_METHODS = ("GET", "HEAD")
REDIS_SCHEMES = ("redis://", "rediss://")
# A slow Redis must not hold requests up: give up on it quickly and fall back.
STORAGE_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1}


def client_key() -> str:
    """Whose budget a request spends: its token's, else its client address's."""
    name = g.get("api_token_name")
    return f"token:{name}" if name else f"address:{request.remote_addr}"


# Each is one budget shared by every endpoint (ApplicationLimit), counted by method kind.
limiter = Limiter(
    key_func=client_key,
    application_limits=[
        ApplicationLimit(
            lambda: current_app.config["RATE_LIMIT_WRITES"], scope="writes", methods=WRITE_METHODS
        ),
        ApplicationLimit(
            lambda: current_app.config["RATE_LIMIT_READS"], scope="reads", methods=READ_METHODS
        ),
    ],
    key_prefix="ratelimit",
    swallow_errors=True,
    in_memory_fallback_enabled=True,
)
limiter.request_filter(is_public_request)


def rate_limited(error: RateLimitExceeded) -> tuple[Response, int]:
    """429 problem+json naming the limit; the headers say when to retry."""
    kind = "writes" if request.method in WRITE_METHODS else "reads"
    who = "this token" if g.get("api_token_name") else "this address"
    return handle_problem(
        Problem(
            429,
            "Too Many Requests",
            f"Too many {kind} from {who}: the limit is {error.description}. "
            "Retry-After says when to try again.",
            "rate-limited",
        )
    )


def reset_and_remaining(current: RequestLimit) -> tuple[float, int]:
    """Seconds until the limit's window resets, and the requests left in it.

    From Redis in one round trip (a pipelined GET and TTL of the counter): Flask-Limiter's
    `window` asks twice, which doubled what the headers cost.
    """
    storage = limiter.limiter.storage  # the in-memory fallback's while Redis is down
    if not isinstance(storage, RedisStorage):
        reset_at, remaining = current.window
        return reset_at - time.time(), remaining
    pipeline = storage.get_connection().pipeline(transaction=False)
    key = storage.prefixed_key(current.key)
    count, ttl = pipeline.get(key).ttl(key).execute()
    return max(ttl, 0), max(0, current.limit.amount - int(count or 0))


def add_rate_limit_headers(response: Response) -> Response:
    """Send RateLimit-Limit, -Remaining and -Reset (seconds), and Retry-After on a 429."""
    current = limiter.current_limit
    if current is None:
        return response
    try:
        reset_in_seconds, remaining = reset_and_remaining(current)
    except Exception:  # Redis went away since the hit: the headers are a courtesy
        return response
    reset_in = max(0, math.ceil(reset_in_seconds))
    response.headers["RateLimit-Limit"] = str(current.limit.amount)
    response.headers["RateLimit-Remaining"] = str(remaining)
    response.headers["RateLimit-Reset"] = str(reset_in)
    if response.status_code == 429:
        response.headers["Retry-After"] = str(max(1, reset_in))
    return response


def storage_uri(app: Flask) -> str:
    """The broker's Redis; memory only when the broker is not Redis (tests of other brokers)."""
    url = app.config["CELERY_BROKER_URL"]
    return url if url.startswith(REDIS_SCHEMES) else "memory://"


def init_rate_limits(app: Flask) -> None:
    """Count API requests against the limits; answer 429 problem+json past them."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", storage_uri(app))
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", STORAGE_OPTIONS)
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, rate_limited)
    app.after_request(add_rate_limit_headers)
