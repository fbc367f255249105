"""Prometheus metrics in the text exposition format (version 0.0.4), written out by hand: counters, gauges and
histograms with labels, thread-safe, rendered at ``GET /metrics``.

Kept small on purpose (no client library): the service needs a handful of series, and the format is simple —
``# HELP``/``# TYPE`` lines, then ``name{label="value"} number`` samples; histograms expose cumulative
``_bucket{le=...}`` counts plus ``_sum`` and ``_count``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.label_names)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up (got {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in items]


class Gauge(_Metric):
    """A value set directly, or read at render time from a callback per label set."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()):
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._callbacks: dict[tuple[str, ...], Callable[[], float]] = {}

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def set_function(self, fn: Callable[[], float], **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._callbacks[key] = fn

    def render(self) -> list[str]:
        with self._lock:
            values = dict(self._values)
            callbacks = dict(self._callbacks)
        for key, fn in callbacks.items():
            values[key] = float(fn())
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in sorted(values.items())
        ]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str] = (), buckets: Iterable[float] = LATENCY_BUCKETS):
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        if "le" in self.label_names:
            raise ValueError("'le' is reserved for histogram buckets")
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
            for i, b in enumerate(self.buckets):
                if value <= b:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        with self._lock:
            return sum(self._counts.get(self._key(labels), []))

    def render(self) -> list[str]:
        with self._lock:
            counts = {k: list(v) for k, v in self._counts.items()}
            sums = dict(self._sums)
        lines = self.header()
        for key in sorted(counts):
            cumulative = 0
            for b, c in zip((*self.buckets, math.inf), counts[key], strict=True):
                cumulative += c
                le = f'le="{_num(b)}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_num(sums[key])}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {cumulative}")
        return lines


class Registry:
    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> _Metric:
        if any(m.name == metric.name for m in self._metrics):
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for m in self._metrics:
            lines += m.render()  # type: ignore[attr-defined]
        return "\n".join(lines) + "\n"


class ServiceMetrics:
    """The service's series. Route labels are path templates (``/v1/label/{task_id:int}``), never raw paths, so a
    client cannot grow the number of series."""

    def __init__(self) -> None:
        self.registry = Registry()
        r = self.registry
        self.requests = r.add(
            Counter(
                "prefsum_http_requests_total",
                "HTTP requests by route, method and status",
                ["route", "method", "status"],
            )
        )
        self.latency = r.add(
            Histogram(
                "prefsum_http_request_duration_seconds",
                "HTTP request latency by route, method and status",
                ["route", "method", "status"],
            )
        )
        self.queue_depth = r.add(Gauge("prefsum_queue_depth", "Items waiting for a model call, per model", ["model"]))
        self.batch_size = r.add(
            Histogram("prefsum_batch_size", "Items per model call, per model", ["model"], buckets=BATCH_BUCKETS)
        )
        self.batch_requests = r.add(
            Histogram("prefsum_batch_requests", "Requests merged into one model call", ["model"], buckets=BATCH_BUCKETS)
        )
        self.queue_wait = r.add(
            Histogram("prefsum_queue_wait_seconds", "Longest wait in the queue of each batch", ["model"])
        )
        self.tokens = r.add(Counter("prefsum_tokens_generated_total", "Summary tokens generated", ["model"]))
        self.summaries = r.add(Counter("prefsum_summaries_total", "Summaries returned", ["model"]))
        self.rejected = r.add(
            Counter("prefsum_queue_rejected_total", "Requests refused with 503 (queue full)", ["model"])
        )
        self.answers = r.add(Counter("prefsum_label_answers_total", "Label answers recorded", []))
        self.eval_jobs = r.add(Counter("prefsum_eval_jobs_total", "Eval jobs finished, by outcome", ["status"]))

    def render(self) -> str:
        return self.registry.render()


class MetricsMiddleware:
    """Plain ASGI wrapper around the app's handler: counts every HTTP response (unknown routes and errors too) and
    its latency, labelled by the route template the router matched ("unmatched" when none did)."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        import time  # noqa: PLC0415

        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("path_template") or "unmatched"
            labels = {"route": route, "method": scope.get("method", "?"), "status": str(status["code"])}
            self.metrics.requests.inc(**labels)
            self.metrics.latency.observe(time.perf_counter() - start, **labels)
