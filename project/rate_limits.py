"""Rate limits on the API: RATE_LIMIT_WRITES and RATE_LIMIT_READS, per token or address.

Counted by `limits` (the library Flask-Limiter counts with) in the broker's Redis, so every
gunicorn process and container shares them. When Redis cannot be reached, each process
counts in its own memory until it is back: limits stay roughly in force, no request fails.

Why not Flask-Limiter itself: it resolves, filters and walks its limits (decorated,
blueprint, application, meta) in Python on every request; with two fixed budgets that
bookkeeping was an eighth of a cheap read's CPU (GET /users/<id>, profiled), more than the
Redis call that does the counting. The two budgets here are parsed once, at start.
"""

import logging
import math
import time
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from project.auth.guard import is_public_request
from project.errors import Problem

log = logging.getLogger(__name__)

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
READ_METHODS = ("GET", "HEAD")
LIMITED_METHODS = frozenset(WRITE_METHODS + READ_METHODS)
LIMIT_SETTINGS = {"writes": "RATE_LIMIT_WRITES", "reads": "RATE_LIMIT_READS"}
REDIS_SCHEMES = ("redis://", "rediss://")
KEY_PREFIX = "ratelimit"
# A slow Redis must not hold requests up: give up on it quickly and fall back.
STORAGE_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1}
RETRY_SHARED_SECONDS = 5  # while Redis is down, how often a request tries it again
EXTENSION = "rate_limits"


def client_key() -> str:
    """Whose budget a request spends: its token's, else its client address's."""
    name = g.get("api_token_name")
    return f"token:{name}" if name else f"address:{request.remote_addr}"


def request_kind() -> str:
    """Which budget the request spends: `writes` or `reads`."""
    return "writes" if request.method in WRITE_METHODS else "reads"


# limits' fixed window, with the counter's TTL read in the same call as the increment.
INCR_EXPIRE_TTL = """
local amount = tonumber(ARGV[2])
local current = redis.call("incrby", KEYS[1], amount)
if current == amount then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""


@dataclass(frozen=True)
class Window:
    """One limit's state after a hit: what the RateLimit-* headers say."""

    item: RateLimitItem
    remaining: int
    reset_in: float

    @property
    def breached(self) -> bool:
        return self.remaining < 0


class RedisFixedWindow:
    """limits' fixed window in Redis, whose hit also returns what the headers need.

    limits' own strategy asks Redis again for the headers (count, then expiry); one script
    makes a request one Redis call instead of three.
    """

    def __init__(self, storage: RedisStorage) -> None:
        self.storage = storage
        self._incr_expire_ttl = storage.get_connection().register_script(INCR_EXPIRE_TTL)

    def hit(self, item: RateLimitItem, *identifiers: str) -> Window:
        """Count one request against `item`; the window after it."""
        key = self.storage.prefixed_key(item.key_for(*identifiers))
        count, ttl = self._incr_expire_ttl([key], [item.get_expiry(), 1])
        return Window(item, item.amount - count, max(0, ttl))


class MemoryFixedWindow:
    """limits' fixed window in this process's memory: the fallback while Redis is down."""

    def __init__(self) -> None:
        self.strategy = FixedWindowRateLimiter(MemoryStorage())

    def hit(self, item: RateLimitItem, *identifiers: str) -> Window:
        """Count one request against `item`; the window after it."""
        allowed = self.strategy.hit(item, *identifiers)
        reset_at, remaining = self.strategy.get_window_stats(item, *identifiers)
        return Window(item, remaining if allowed else -1, reset_at - time.time())


class RateLimits:
    """One app's two budgets, parsed once, counted in Redis or, while it is down, in memory."""

    def __init__(self, app: Flask) -> None:
        self.items = {
            kind: sorted(parse_many(app.config[setting])) if app.config[setting] else []
            for kind, setting in LIMIT_SETTINGS.items()
        }
        storage = storage_from_string(storage_uri(app), **STORAGE_OPTIONS)
        self.local = MemoryFixedWindow()
        self.shared = RedisFixedWindow(storage) if isinstance(storage, RedisStorage) else None
        self.shared_down_until = 0.0

    def hit(self, kind: str, who: str) -> Window | None:
        """Count a request of `kind` by `who` against each of its limits.

        Returns the window the headers show (the first breached, else the one with the
        fewest requests left), or None when the kind is not limited.
        """
        windows = [self._hit(item, kind, who) for item in self.items[kind]]
        if not windows:
            return None
        breached = [window for window in windows if window.breached]
        return breached[0] if breached else min(windows, key=lambda window: window.remaining)

    def _hit(self, item: RateLimitItem, kind: str, who: str) -> Window:
        identifiers = (KEY_PREFIX, kind, who)
        if self.shared is not None and time.monotonic() >= self.shared_down_until:
            try:
                window = self.shared.hit(item, *identifiers)
            except (RedisError, OSError) as error:
                if not self.shared_down_until:
                    log.warning("rate limit storage unreachable, counting in memory: %s", error)
                self.shared_down_until = time.monotonic() + RETRY_SHARED_SECONDS
            else:
                if self.shared_down_until:
                    log.info("rate limit storage reachable again")
                    self.shared_down_until = 0.0
                return window
        return self.local.hit(item, *identifiers)


def check_rate_limit() -> None:
    """Count an API request against its budget; 429 problem+json past it."""
    if request.method not in LIMITED_METHODS or is_public_request():
        return  # OPTIONS (Flask answers it itself) and public endpoints spend no budget
    kind = request_kind()
    window = current_app.extensions[EXTENSION].hit(kind, client_key())
    if window is None:
        return
    g.rate_limit_window = window
    if window.breached:
        who = "this token" if g.get("api_token_name") else "this address"
        raise Problem(
            429,
            "Too Many Requests",
            f"Too many {kind} from {who}: the limit is {window.item}. "
            "Retry-After says when to try again.",
            "rate-limited",
        )


def add_rate_limit_headers(response: Response) -> Response:
    """Send RateLimit-Limit, -Remaining and -Reset (seconds), and Retry-After on a 429."""
    window: Window | None = g.get("rate_limit_window")
    if window is None:
        return response
    reset_in = max(0, math.ceil(window.reset_in))
    response.headers["RateLimit-Limit"] = str(window.item.amount)
    response.headers["RateLimit-Remaining"] = str(max(0, window.remaining))
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
    if not any(app.config[setting] for setting in LIMIT_SETTINGS.values()):
        return
    app.extensions[EXTENSION] = RateLimits(app)
    app.before_request(check_rate_limit)
    app.after_request(add_rate_limit_headers)
