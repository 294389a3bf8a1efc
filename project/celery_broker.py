"""The Redis broker transport: kombu's, with one Redis client per channel instead of one per call.

kombu's Redis channel builds a new `redis.Redis` client for every publish and, in a worker,
for every delivery and every acknowledgement (`conn_or_acquire`). Building one copies
redis-py's table of about 170 response callbacks, upper-casing each name: 60-75 µs of CPU
on this project's machines, twice per task in a worker's main process and once per
published task (redis-py issue #3624). A client holds no connection of its own (each
command takes one from the channel's pool and pipelines are still made per use), so one
client per pool serves every call.
"""

from typing import Any

from kombu.transport import redis as kombu_redis


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
