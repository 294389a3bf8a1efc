"""`GET /metrics`: the Prometheus text format."""

from apiflask import APIBlueprint
from flask import Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from project.metrics.exporter import REGISTRY

metrics_blueprint = APIBlueprint("metrics", __name__, tag="Metrics")

METRICS_RESPONSE = {
    200: {
        "description": "Prometheus text format: request counts and latency per route and "
        "status, queue length and oldest task's age, task records by state, workers.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@metrics_blueprint.get("/metrics")
@metrics_blueprint.doc(responses=METRICS_RESPONSE)
def metrics() -> Response:
    """Return the metrics; without a token only from METRICS_ALLOW's addresses."""
    registry = current_app.extensions[REGISTRY]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
