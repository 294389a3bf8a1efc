"""Rate limits on the API: RATE_LIMIT_WRITES and RATE_LIMIT_READS, per token or address.

Counted in Redis (the broker's), so every gunicorn process and container shares them.
When Redis cannot be reached, each process counts in its own memory until it is back
(Flask-Limiter's in-memory fallback): limits stay roughly in force, no request fails.
"""

import math
import time

from flask import Flask, Response, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded, RequestLimit
from limits import RateLimitItem
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter

from project.auth.guard import is_public_request
from project.errors import Problem, handle_problem

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
READ_METHODS = ("GET", "HEAD")
LIMIT_SETTINGS = {"writes": "RATE_LIMIT_WRITES", "reads": "RATE_LIMIT_READS"}
REDIS_SCHEMES = ("redis://", "rediss://")
# A slow Redis must not hold requests up: give up on it quickly and fall back.
STORAGE_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1}


def client_key() -> str:
    """Whose budget a request spends: its token's, else its client address's."""
    name = g.get("api_token_name")
    return f"token:{name}" if name else f"address:{request.remote_addr}"


def request_kind() -> str:
    """Which budget the request spends: `writes` or `reads`."""
    return "writes" if request.method in WRITE_METHODS else "reads"


def limit_for_request() -> str:
    """RATE_LIMIT_WRITES or RATE_LIMIT_READS, by the request's method."""
    return current_app.config[LIMIT_SETTINGS[request_kind()]]


# Two budgets shared by every endpoint, writes and reads, as one application limit whose
# amount and scope follow the method: Flask-Limiter parses and walks each application limit
# on every request, so one limit is half the work of a limit per kind.
limiter = Limiter(
    key_func=client_key,
    application_limits=[
        ApplicationLimit(
            limit_for_request,
            scope=lambda _endpoint: request_kind(),
            methods=WRITE_METHODS + READ_METHODS,
        ),
    ],
    key_prefix="ratelimit",
    swallow_errors=True,
    in_memory_fallback_enabled=True,
)
limiter.request_filter(is_public_request)


def rate_limited(error: RateLimitExceeded) -> tuple[Response, int]:
    """429 problem+json naming the limit; the headers say when to retry."""
    kind = request_kind()
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


# limits' fixed window, with the counter's TTL read in the same call as the increment.
INCR_EXPIRE_TTL = """
local amount = tonumber(ARGV[2])
local current = redis.call("incrby", KEYS[1], amount)
if current == amount then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""


class FixedWindowNotingReset(FixedWindowRateLimiter):
    """The fixed window Flask-Limiter uses, whose hit also notes what the headers need.

    Flask-Limiter's headers ask Redis again after the hit (count, then expiry); noting both
    from the hit itself makes a limited request one Redis call instead of three.
    """

    def __init__(self, storage: RedisStorage) -> None:
        super().__init__(storage)
        self._incr_expire_ttl = storage.get_connection().register_script(INCR_EXPIRE_TTL)

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Count the hit; note the requests left and the seconds to the reset in `g`."""
        key = item.key_for(*identifiers)
        prefixed = self.storage.prefixed_key(key)
        count, ttl = self._incr_expire_ttl([prefixed], [item.get_expiry(), cost])
        g.setdefault("rate_limit_windows", {})[key] = (max(0, item.amount - count), max(0, ttl))
        return count <= item.amount


def remaining_and_reset(current: RequestLimit) -> tuple[int, float]:
    """The requests left in the limit's window, and the seconds until it resets."""
    noted = g.get("rate_limit_windows", {}).get(current.key)
    if noted is not None:
        return noted
    # The in-memory fallback's counters, while Redis is down: cheap to ask.
    reset_at, remaining = current.window
    return remaining, reset_at - time.time()


def add_rate_limit_headers(response: Response) -> Response:
    """Send RateLimit-Limit, -Remaining and -Reset (seconds), and Retry-After on a 429."""
    current = limiter.current_limit
    if current is None:
        return response
    try:
        remaining, reset_in_seconds = remaining_and_reset(current)
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
    storage = limiter.storage
    if isinstance(storage, RedisStorage):
        # Flask-Limiter builds its strategy from a name; the noting one replaces it here.
        limiter._limiter = FixedWindowNotingReset(storage)
    app.register_error_handler(RateLimitExceeded, rate_limited)
    app.after_request(add_rate_limit_headers)
