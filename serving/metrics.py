"""Prometheus text exposition for a replica: counters, gauges and histograms, standard library only.

>>> applied = Counter("snapshots_applied_total", "Snapshots applied.")
>>> applied.inc()
>>> rejected = Counter("snapshots_rejected_total", "Snapshots rejected.", labels=("reason",))
>>> rejected.inc(reason="corrupt")
>>> print(render([applied, rejected]))
# HELP snapshots_applied_total Snapshots applied.
# TYPE snapshots_applied_total counter
snapshots_applied_total 1.0
# HELP snapshots_rejected_total Snapshots rejected.
# TYPE snapshots_rejected_total counter
snapshots_rejected_total{reason="corrupt"} 1.0
<BLANKLINE>
"""

from __future__ import annotations

import bisect
import threading


def _labels(names, values) -> str:
    if not names:
        return ""
    escaped = (str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped)) + "}"


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: tuple = ()):
        self.name, self.help, self.label_names = name, help_text, labels
        self._values: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: dict) -> tuple:
        return tuple(labels[n] for n in self.label_names)

    def value(self, **labels) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self):
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {float(value)}"

    def render(self) -> str:
        return "\n".join([f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}", *self.samples()])


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels) -> None:
        self._values[self._key(labels)] = value


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets):
        super().__init__(name, help_text)
        self.buckets = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sum += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    def samples(self):
        cumulative = 0
        for bound, count in zip(self.buckets + [float("inf")], self._counts):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            yield f'{self.name}_bucket{{le="{le}"}} {cumulative}'
        yield f"{self.name}_sum {self._sum}"
        yield f"{self.name}_count {cumulative}"


def render(metrics) -> str:
    return "\n".join(m.render() for m in metrics) + "\n"
