"""The Redis result backend: no subscription nobody waits for, no deprecated SETEX."""

from celery.backends.redis import RedisBackend


class PublishOnlyRedisBackend(RedisBackend):
    """Subscribe to a task's result channel only when a caller waits on it.

    Celery's Redis backend subscribes on every publish, in case `.get()` follows. A web
    process never waits, so each publish cost a subscription, and a Redis outage left
    the subscriber broken ("the Celery application must be restarted") until the
    process restarted. `AsyncResult.get()` still subscribes when it is called.
    """

    def on_task_call(self, producer: object, task_id: str) -> None:
        """Skip the eager subscription."""

    def _set(self, key: str, value: str, expires: int | None = None) -> None:
        """Store and announce a result as Celery does, with SET EX: redis-py deprecates SETEX."""
        if expires is None:
            expires = self.expires
        with self.client.pipeline() as pipe:
            pipe.set(key, value, ex=expires or None)
            pipe.publish(key, value)
            pipe.execute()
