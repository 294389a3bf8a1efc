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
    return celery.connection_for_read().transport.driver_type == "redis"


def held_task_ids(celery: Celery, queues: Iterable[str], wanted: set[str]) -> set[str]:
    """Return which of `wanted` the Redis broker holds: waiting in `queues`, or taken, unacked.

    Reads kombu's layout: one Redis list per queue and priority, and the hash of messages
    workers took and have not acknowledged. The hash is read before and after the lists,
    so a message that moves between them meanwhile (taken, or handed back) is still seen.
    """
    with celery.pool.acquire(block=True) as connection:
        channel = connection.default_channel
        client, prefix = channel.client, channel.global_keyprefix or ""
        unacked = prefix + channel.unacked_key
        held = wanted & _ids_of_unacked(client.hvals(unacked))
        for queue in queues:
            for priority in channel.priority_steps:
                key = prefix + channel._q_for_pri(queue, priority)
                # From the newest end: a push there shifts the rest along, so a message may
                # be read twice but never skipped; the other end is where workers take from.
                start = 0
                while chunk := client.lrange(key, start, start + SCAN_CHUNK - 1):
                    held |= wanted & {_task_id(json.loads(raw)) for raw in chunk}
                    start += len(chunk)
        return held | (wanted & _ids_of_unacked(client.hvals(unacked)))


def _ids_of_unacked(values: list[bytes]) -> set[str | None]:
    return {_task_id(json.loads(value)[0]) for value in values}  # [message, exchange, key]


def _task_id(message: dict[str, Any]) -> str | None:
    return message.get("headers", {}).get("id")
