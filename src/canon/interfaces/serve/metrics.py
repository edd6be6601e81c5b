"""The model server's metrics in the Prometheus text exposition format (version 0.0.4),
hand-rolled: four families do not need a client library.

    canon_requests_total{route,code}            counter
    canon_request_duration_seconds{route}       histogram (le buckets, _sum, _count)
    canon_request_errors_total{route,kind}      counter (kind: bad_request, rejected, internal)
    canon_model_info{artifact,commit,...} 1     gauge
    canon_model_ready                           gauge (1 when /readyz answers 200)
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(pairs: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in pairs.items()) + "}"


def number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Histogram:
    def __init__(self) -> None:
        self.buckets = [0] * len(BUCKETS)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
        self.total += seconds
        self.count += 1


class Metrics:
    """Counters updated from the event loop and worker threads alike (one lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.errors: dict[tuple[str, str], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = defaultdict(_Histogram)

    def observe(self, route: str, code: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, code)] += 1
            self.latency[route].observe(seconds)

    def error(self, route: str, kind: str) -> None:
        with self._lock:
            self.errors[(route, kind)] += 1

    def render(self, info: Mapping[str, str], ready: bool) -> str:
        out: list[str] = []
        with self._lock:
            out += [
                "# HELP canon_requests_total Requests answered, by route and status code.",
                "# TYPE canon_requests_total counter",
            ]
            for (route, code), n in sorted(self.requests.items()):
                out.append(f"canon_requests_total{labels({'route': route, 'code': str(code)})} {n}")
            out += [
                "# HELP canon_request_duration_seconds Time to answer a request.",
                "# TYPE canon_request_duration_seconds histogram",
            ]
            for route, hist in sorted(self.latency.items()):
                for bound, n in zip(BUCKETS, hist.buckets, strict=True):
                    le = labels({"route": route, "le": number(bound)})
                    out.append(f"canon_request_duration_seconds_bucket{le} {n}")
                inf = labels({"route": route, "le": "+Inf"})
                out.append(f"canon_request_duration_seconds_bucket{inf} {hist.count}")
                out.append(
                    f"canon_request_duration_seconds_sum{labels({'route': route})} "
                    f"{number(hist.total)}"
                )
                out.append(
                    f"canon_request_duration_seconds_count{labels({'route': route})} {hist.count}"
                )
            out += [
                "# HELP canon_request_errors_total Requests that failed, by kind.",
                "# TYPE canon_request_errors_total counter",
            ]
            for (route, kind), n in sorted(self.errors.items()):
                out.append(
                    f"canon_request_errors_total{labels({'route': route, 'kind': kind})} {n}"
                )
        out += [
            "# HELP canon_model_info The model this server runs.",
            "# TYPE canon_model_info gauge",
            f"canon_model_info{labels(info)} 1",
            "# HELP canon_model_ready 1 when the model is loaded and its self-check passed.",
            "# TYPE canon_model_ready gauge",
            f"canon_model_ready {1 if ready else 0}",
        ]
        return "\n".join(out) + "\n"
