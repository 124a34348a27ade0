"""Gated publishing and rollback: a worse model does not reach serving, or does not stay there.

The gate compares a key's recent metric (the last `window` rows, test-then-train) with the recent
metric the last published version had when it was published. A snapshot more than `margin` worse
is held back and counted. Rollback scores the published model itself on live rows, frozen as
serving holds it; when its live metric falls more than `rollback_margin` below what it had at
publication, the key goes back to the version published before it: the job publishes a rollback
record (a new version whose model is the good one again) and relearns from that model.

>>> from river import metrics
>>> settings = GateSettings(enabled=True, window=4, margin=0.1, min_rows=4)
>>> baseline = PublishedVersion(version=10, metric_value=0.9, payload=b"")
>>> worse_by_more_than(0.75, baseline.metric_value, settings.margin, metrics.Accuracy())
True
>>> worse_by_more_than(0.85, baseline.metric_value, settings.margin, metrics.Accuracy())
False
>>> worse_by_more_than(0.85, 0.9, 0.1, metrics.LogLoss())  # lower is better: 0.85 is an improvement
False
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from river import utils

from jobs.config import settings_of


@dataclasses.dataclass(frozen=True)
class GateSettings:
    enabled: bool = False
    window: int = 50
    margin: float = 0.05
    min_rows: int = 20
    rollback: bool = False
    rollback_margin: float = 0.1

    @classmethod
    def from_config(cls, section: dict, error) -> "GateSettings":
        settings = settings_of(cls, section, "safety.gate", error)
        if settings.window < 1 or settings.min_rows < 1 or settings.margin < 0 or settings.rollback_margin < 0:
            raise error("safety.gate", "needs window >= 1, min_rows >= 1 and margins >= 0")
        if settings.rollback and not settings.enabled:
            raise error("safety.gate.rollback", "needs the gate itself enabled (safety.gate.enabled: true)")
        return settings


@dataclasses.dataclass(frozen=True)
class PublishedVersion:
    version: int
    metric_value: float | None
    payload: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass
class GateState:
    """One key's gate: its recent metric, what serving holds, and the version before that."""

    recent: Any
    published: PublishedVersion | None = None
    previous: PublishedVersion | None = None
    # The published model, frozen as serving holds it, and its metric on rows since publication.
    served_model: Any = None
    served_live: Any = None
    held_back: int = 0
    rollbacks: int = 0


def rolling(metric, window: int):
    return utils.Rolling(metric, window_size=window)


def value_of(metric) -> float | None:
    value = metric.get()
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def worse_by_more_than(value, baseline, margin: float, metric) -> bool:
    """Whether `value` is worse than `baseline` by more than `margin`, in the metric's direction."""
    if value is None or baseline is None:
        return False
    return value < baseline - margin if metric.bigger_is_better else value > baseline + margin
