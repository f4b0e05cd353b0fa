"""The Prometheus metrics of one server, in a registry of its own (not the process-global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Requests and their latency per endpoint, errors by kind, batch sizes, queue depth."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("resnet_serve_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.errors = Counter("resnet_serve_errors", "Refused or failed requests and images, by kind", ["kind"],
                              registry=r)
        self.latency = Histogram("resnet_serve_request_latency_seconds", "Time from request to response",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_progress = Gauge("resnet_serve_requests_in_progress", "Requests received and not yet answered",
                                 registry=r)
        self.queue_depth = Gauge("resnet_serve_queue_depth", "Images waiting for a batch", registry=r)
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, 128, max_batch})
        self.batch_size = Histogram("resnet_serve_batch_size", "Images per scored batch",
                                    buckets=[s for s in sizes if s <= max_batch], registry=r)
        self.inference = Histogram("resnet_serve_inference_seconds", "Time to score one batch",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter("resnet_serve_images", "Images scored", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
