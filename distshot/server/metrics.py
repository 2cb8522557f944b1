"""The service's Prometheus metrics, on a registry of its own (several apps in one test
process must not share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "distshot_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.shots = Counter(
            "distshot_shots",
            "Shots finished, by status (ok, failed, rejected) and engine.",
            ["status", "engine"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "distshot_queue_depth",
            "Accepted captures waiting for a browser.",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "distshot_in_flight",
            "Captures running now.",
            registry=self.registry,
        )
        self.capture_seconds = Histogram(
            "distshot_capture_seconds",
            "Time from a capture's start to its record (one attempt or several).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.overloaded = Counter(
            "distshot_overloaded",
            "Requests answered 429, by reason (queue, key_queue, memory).",
            ["reason"],
            registry=self.registry,
        )
        self.memory_bytes = Gauge(
            "distshot_process_tree_rss_bytes",
            "Resident memory of the service and its browsers.",
            registry=self.registry,
        )
        self.webhooks_pending = Gauge(
            "distshot_webhooks_pending",
            "Webhook deliveries not yet acknowledged.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
