"""Request metrics per endpoint and status (prometheus-flask-exporter), and what /metrics reads."""

import os

from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_flask_exporter import PrometheusMetrics

from project.metrics.collector import StackCollector

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
REGISTRY = "metrics_registry"


def init_metrics(app: Flask) -> None:
    """Count and time every request; keep the registry /metrics serves in app.extensions."""
    # Labelled by route (`/users/<int:user_id>`), not by path: one series per endpoint.
    metrics = PrometheusMetrics(
        app=app, path=None, registry=CollectorRegistry(), group_by="url_rule"
    )
    if os.environ.get(MULTIPROCESS_DIR):
        # Under gunicorn (gunicorn.conf.py sets the directory) each process writes its counts
        # to files there; /metrics adds up every process's, not only the one answering.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:  # one process (flask run, the tests' app): its own counts are all there is
        registry = metrics.registry
    registry.register(StackCollector(app))
    app.extensions[REGISTRY] = registry
