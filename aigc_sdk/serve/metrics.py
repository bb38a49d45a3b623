"""Prometheus metrics of one server app, in a registry of its own (two apps in one
process never mix their counts)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class Metrics:
    def __init__(self, lanes: Callable[[], Iterable]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "aigc_requests", "HTTP requests answered", ["endpoint", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "aigc_request_duration_seconds",
            "Time from a request's arrival to its last byte",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.generations = Counter(
            "aigc_generations",
            "Generations by outcome: ok, error (the generator failed), rejected (queue full), "
            "cancelled (the client left)",
            ["generator", "outcome"],
            registry=r,
        )
        self.errors = Counter(
            "aigc_errors", "Generator failures answered with a 500", ["generator"], registry=r
        )
        self.tokens = Counter(
            "aigc_tokens", "Tokens read (prompt) and written (completion)", ["generator", "kind"],
            registry=r,
        )  # fmt: skip
        self.first_token_seconds = Histogram(
            "aigc_time_to_first_token_seconds",
            "Time from a text request's arrival to its first piece of text",
            ["generator"],
            buckets=FIRST_TOKEN_BUCKETS,
            registry=r,
        )
        self.generation_seconds = Histogram(
            "aigc_generation_duration_seconds",
            "Time from a generation's admission to its end",
            ["generator"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        r.register(_LaneCollector(lanes))

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.request_seconds.labels(endpoint).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _LaneCollector:
    """Queue lengths and running requests, read from the lanes at scrape time."""

    def __init__(self, lanes: Callable[[], Iterable]) -> None:
        self.lanes = lanes

    def describe(self):
        return []

    def collect(self):
        queued = GaugeMetricFamily(
            "aigc_queue_length", "Requests waiting for a generator", labels=["generator"]
        )
        running = GaugeMetricFamily(
            "aigc_running_requests", "Requests being generated", labels=["generator"]
        )
        for lane in self.lanes():
            waiting, active = lane.load()
            queued.add_metric([lane.name], waiting)
            running.add_metric([lane.name], active)
        yield queued
        yield running
