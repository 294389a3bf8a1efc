"""Metrics: /metrics in the Prometheus text format, for dashboards and autoscalers."""
