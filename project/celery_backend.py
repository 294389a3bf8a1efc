"""The Redis result backend: no subscription nobody waits for, one round trip per result."""

from typing import Any

from celery import states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str
from kombu.utils.objects import cached_property
from redis.commands.core import Script

# Celery reads a task's result before storing another, so a late duplicate delivery cannot
# overwrite SUCCESS; here that check and the store (SET, PUBLISH) are one script, atomic.
# The check reads only the stored JSON's first bytes, whatever the result's size: Celery's
# result metadata starts with its status (tests/test_result_backend.py holds it to that).
SUCCEEDED_PREFIX = '{"status": "SUCCESS"'
STORE_UNLESS_SUCCEEDED = """
local current = redis.call('GETRANGE', KEYS[1], 0, #ARGV[3] - 1)
if current == ARGV[3] then
  return 0
end
local expires = tonumber(ARGV[2])
if expires > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', expires)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class PublishOnlyRedisBackend(RedisBackend):
    """Celery's Redis backend, subscribing only for a caller that waits, storing in one call.

    Celery's Redis backend subscribes to a task's result channel on every publish, in case
    `.get()` follows. A web process never waits, so each publish cost a subscription, and
    a Redis outage left the subscriber broken ("the Celery application must be restarted")
    until the process restarted. `AsyncResult.get()` still subscribes when it is called.
    Storing a result is one script (STORE_UNLESS_SUCCEEDED) instead of a GET and a SET.
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

    @cached_property
    def _store_unless_succeeded(self) -> Script:
        return self.client.register_script(STORE_UNLESS_SUCCEEDED)

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Store a task's state unless it already succeeded, in one round trip (Celery: two)."""
        meta = self._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        value = self.encode(meta)
        if len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError(
                "value too large for Redis backend", state=state, task_id=task_id
            )
        expires = self.failure_expires if state == states.FAILURE else self.expires
        key = bytes_to_str(self.get_key_for_task(task_id))
        arguments = [value, expires or 0, SUCCEEDED_PREFIX]  # 0: kept for good, as in Celery
        self.ensure(self._store_unless_succeeded, ([key], arguments))
        return result
