"""The Redis broker: kombu's transport with one client per channel, and what the broker holds.

kombu's Redis channel builds a new `redis.Redis` client for every publish and, in a worker,
for every delivery and every acknowledgement (`conn_or_acquire`). Building one copies
redis-py's table of about 170 response callbacks, upper-casing each name: 60-75 µs of CPU
on this project's machines, twice per task in a worker's main process and once per
published task (redis-py issue #3624). A client holds no connection of its own (each
command takes one from the channel's pool and pipelines are still made per use), so one
client per pool serves every call.
"""

import json
from collections.abc import Iterable
from typing import Any

from celery import Celery
from kombu.transport import redis as kombu_redis

SCAN_CHUNK = 1000  # queued messages read per round trip by held_task_ids


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, reusing its synchronous client while its pool stays the same."""

    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        # kombu replaces the pool when the channel closes or the process forks.
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with that channel; `make_celery` picks it for `redis://`."""

    Channel = Channel


def is_redis_broker(celery: Celery) -> bool:
    """Say whether this Celery app's broker is Redis (kombu's transport or this one)."""
    with celery.connection_for_read() as connection:  # not connected: it only reads the URL
        return connection.transport.driver_type == "redis"


def queue_keys(channel: Channel, queue: str) -> list[str]:
    """The Redis lists kombu keeps for `queue` (one per priority step), unprefixed."""
    return [channel._q_for_pri(queue, priority) for priority in channel.priority_steps]


def held_task_ids(celery: Celery, queues: Iterable[str], wanted: set[str]) -> set[str]:
    """Return which of `wanted` the Redis broker holds: waiting in `queues`, or taken, unacked.

    Reads kombu's layout: one Redis list per queue and priority, and the hash of messages
    workers took and have not acknowledged. The hash is read before and after the lists,
    so a message that moves between them meanwhile (taken, or handed back) is still seen.
    """
    with celery.pool.acquire(block=True) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as client:
            return _held_task_ids(channel, client, queues, wanted)


def _held_task_ids(
    channel: Channel, client: Any, queues: Iterable[str], wanted: set[str]
) -> set[str]:
    prefix = channel.global_keyprefix or ""  # kombu prefixes HSET and LPUSH, not these reads
    unacked = prefix + channel.unacked_key
    held = wanted & _ids_of_unacked(client.hvals(unacked))
    for key in (prefix + key for queue in queues for key in queue_keys(channel, queue)):
        # From the newest end: a push there shifts the rest along, so a message may be read
        # twice but never skipped; the other end is where workers take from.
        start = 0
        while chunk := client.lrange(key, start, start + SCAN_CHUNK - 1):
            held |= wanted & {_task_id(raw) for raw in chunk}
            start += len(chunk)
    return held | (wanted & _ids_of_unacked(client.hvals(unacked)))


def _ids_of_unacked(values: list[bytes]) -> set[str | None]:
    return {_task_id(value, unacked=True) for value in values}


def _task_id(raw: bytes, unacked: bool = False) -> str | None:
    """The task id in a kombu message (an unacked entry is [message, exchange, routing key])."""
    try:
        message = json.loads(raw)
        return ((message[0] if unacked else message).get("headers") or {}).get("id")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None  # not a Celery task message
