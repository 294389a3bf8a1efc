"""The Redis broker transport on a real Redis: one client per channel, messages as before."""

import uuid

from flask import Flask
from kombu import Queue

from project.celery_broker import Channel


def test_a_channel_reuses_one_client_until_its_pool_changes(app: Flask) -> None:
    with app.extensions["celery"].connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second  # kombu's own builds a client per call
            assert first.ping()
        channel._disconnect_pools()  # what kombu does when the channel closes or forks
        with channel.conn_or_acquire() as after:
            assert after is not first and after.connection_pool is channel.pool
            assert after.ping()


def test_messages_are_published_received_and_acknowledged(app: Flask) -> None:
    queue = Queue(f"broker-test-{uuid.uuid4().hex[:8]}")
    body = {"n": 1}
    with app.extensions["celery"].connection_for_write() as connection:
        with connection.Producer() as producer:
            producer.publish(body, routing_key=queue.name, declare=[queue])
        simple = connection.SimpleQueue(queue)
        message = simple.get(timeout=5)
        assert message.payload == body
        message.ack()  # the unacked index, through the channel's one client
        channel = simple.consumer.channel
        with channel.conn_or_acquire() as client:
            assert not client.hexists(channel.unacked_key, message.delivery_tag)
            assert client.llen(queue.name) == 0
        simple.close()
