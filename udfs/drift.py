"""Per-key concept drift: a River drift detector watches each key's prediction error.

The error is 0/1 (wrong class) for a classifier and the absolute error for a regressor, computed
from the prediction made before the model learned the row. When the detector fires, the learner
takes the configured action: `reset` the model, `promote_challenger`, or only `flag` it. Every
drift becomes a `DriftEvent` for the drift topic and is counted in the key's snapshot envelope.

>>> settings = DriftSettings(enabled=True, detector={"class": "drift.ADWIN", "params": {"delta": 0.01}})
>>> watch = DriftWatch.new(settings)
>>> errors = [0.0] * 300 + [1.0] * 60
>>> fired = [i for i, e in enumerate(errors) if watch.update(e, window_end_ms=i)]
>>> len(fired) >= 1 and 300 < fired[0] < 340
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jobs.config import settings_of
from udfs.model_spec import build_detector

DRIFT_ACTIONS = ("reset", "promote_challenger", "flag")


@dataclasses.dataclass(frozen=True)
class DriftSettings:
    enabled: bool = False
    detector: dict = dataclasses.field(default_factory=lambda: {"class": "drift.ADWIN"})
    action: str = "reset"

    @classmethod
    def from_config(cls, section: dict, error) -> "DriftSettings":
        settings = settings_of(cls, section, "safety.drift", error)
        if settings.action not in DRIFT_ACTIONS:
            raise error("safety.drift.action", f"must be one of {', '.join(DRIFT_ACTIONS)}, not {settings.action!r}")
        build_detector(settings.detector, "safety.drift.detector")
        return settings


@dataclasses.dataclass(frozen=True)
class DriftEvent:
    key: str
    window_end_ms: int
    model_version: int
    action: str
    count: int


@dataclasses.dataclass
class DriftWatch:
    """One key's detector and what it found so far; lives in the key's state."""

    detector: Any
    count: int = 0
    last_window_end_ms: int = 0
    last_action: str = ""

    @classmethod
    def new(cls, settings: DriftSettings) -> "DriftWatch":
        return cls(detector=build_detector(settings.detector, "safety.drift.detector"))

    def update(self, error: float, window_end_ms: int) -> bool:
        """Feed one prediction error; True when this row is where a drift is detected."""
        self.detector.update(error)
        if not self.detector.drift_detected:
            return False
        self.count += 1
        self.last_window_end_ms = window_end_ms
        return True

    def summary(self) -> dict:
        return {"count": self.count, "last_window_end_ms": self.last_window_end_ms, "last_action": self.last_action}


def prediction_error(y_pred, y, classifier: bool) -> float:
    """How wrong a prediction was: 0 or 1 for a class (from probabilities or a label), |y - y_pred| else."""
    if classifier:
        label = max(y_pred, key=y_pred.get) if isinstance(y_pred, dict) else y_pred
        return float(label != y)
    return abs(float(y) - float(y_pred))
