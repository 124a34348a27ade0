"""Test-then-train, one River model per key: predict on each feature row, then learn from it.

`Learner` is the logic, with no Flink in it; `udfs.learner_function.LearnerFunction` runs it in Flink,
keeping a `KeyState` per key in keyed state.

>>> learner = Learner(LearnerSettings(
...     model={"steps": [{"class": "linear_model.LogisticRegression"}]},
...     metric={"class": "metrics.Accuracy"}, feature_names=("x",), window_ms=1000))
>>> state = learner.new_state()
>>> first = learner.process(state, {"x": 1.0}, True, window_end_ms=1000)
>>> (first.prediction, first.model_version, state.n_learned, state.model_version)
(0.0, 0, 1, 1)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from river.utils.inspect import isclassifier

from udfs.envelope import Snapshot, dump_model, encode, feature_schema_hash
from udfs.model_spec import build_metric, build_model

STATE_SCHEMA_VERSION = 1
SNAPSHOT_POLICIES = ("every_n_updates", "every_window", "every_seconds")


@dataclasses.dataclass
class KeyState:
    """Everything the job knows about one key; one Flink ValueState holds it."""

    model: Any
    metric: Any
    n_learned: int = 0
    # Grows by one per update and never goes back, across restarts and resets alike.
    model_version: int = 0
    published_version: int = 0
    last_window_end_ms: int = 0
    # window end -> (features, prediction) of rows waiting for their delayed label.
    pending: dict = dataclasses.field(default_factory=dict)
    pending_dropped: int = 0
    # Rows for a window this key has already learned: a source replay after an upgrade, skipped.
    replayed_windows: int = 0
    # The processing-time timer of the every_seconds policy, 0 when none is set.
    pending_timer_ms: int = 0
    unlabeled: int = 0
    schema_version: int = STATE_SCHEMA_VERSION


@dataclasses.dataclass(frozen=True)
class Prediction:
    window_end_ms: int
    prediction: float | None
    model_version: int


@dataclasses.dataclass(frozen=True)
class LearnerSettings:
    model: dict
    metric: dict
    feature_names: tuple
    window_ms: int
    label_delay_windows: int = 0
    max_pending_windows: int = 100
    snapshot_policy: str = "every_n_updates"
    snapshot_every_n: int = 10
    snapshot_every_ms: int = 5000

    @classmethod
    def from_config(cls, config) -> "LearnerSettings":
        policy = config.get("snapshots.policy", "every_n_updates")
        if policy not in SNAPSHOT_POLICIES:
            raise config.error("snapshots.policy", f"must be one of {', '.join(SNAPSHOT_POLICIES)}, not {policy!r}")
        columns = config["features.columns"]
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise config.error("features.columns", "must be a non-empty list of column names")
        delay = config.get("features.label_delay_windows", 0)
        if not isinstance(delay, int) or delay < 0:
            raise config.error("features.label_delay_windows", f"must be a whole number >= 0, not {delay!r}")
        return cls(
            model=config["model"],
            metric=config["metric"],
            feature_names=tuple(columns),
            window_ms=int(float(config["window.size_seconds"]) * 1000),
            label_delay_windows=delay,
            max_pending_windows=int(config.get("features.max_pending_windows", 100)),
            snapshot_policy=policy,
            snapshot_every_n=int(config.get("snapshots.every_n_updates", 10)),
            snapshot_every_ms=int(float(config.get("snapshots.every_seconds", 5)) * 1000),
        )


class StateSchemaError(RuntimeError):
    """Keyed state written by a job version this code cannot read."""


def migrate(state: KeyState) -> KeyState:
    """Bring a KeyState restored from a savepoint of an older job version up to this one.

    Fields added since are filled with their defaults; state from a newer version is refused,
    because reading it with older code would silently drop what the newer code keeps."""
    version = getattr(state, "schema_version", 0)
    if version == STATE_SCHEMA_VERSION:
        return state
    if version > STATE_SCHEMA_VERSION:
        raise StateSchemaError(
            f"learner state has schema version {version}, this job reads up to {STATE_SCHEMA_VERSION}: "
            "submit the job version that wrote the savepoint, or a newer one"
        )
    for field in dataclasses.fields(KeyState):
        if field.name not in vars(state):
            default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            setattr(state, field.name, default)
    state.schema_version = STATE_SCHEMA_VERSION
    return state


def as_number(y_pred) -> float | None:
    """A prediction as one number: the positive class's probability, or the regression value."""
    if isinstance(y_pred, dict):
        return float(y_pred.get(True, y_pred.get(1, 0.0))) if y_pred else None
    if y_pred is None:
        return None
    return float(y_pred)


class Learner:
    def __init__(self, settings: LearnerSettings):
        self.settings = settings
        self.schema_hash = feature_schema_hash(settings.feature_names)
        # Built once here so that a bad spec fails at submit time, before the job starts.
        build_model(settings.model)
        build_metric(settings.metric)

    def new_state(self) -> KeyState:
        return KeyState(model=build_model(self.settings.model), metric=build_metric(self.settings.metric))

    def predict(self, state: KeyState, x: dict):
        # The same choice as river.evaluate.progressive_val_score, so metrics agree with it exactly.
        if isclassifier(state.model) and not state.metric.requires_labels:
            return state.model.predict_proba_one(x)
        return state.model.predict_one(x)

    def process(self, state: KeyState, x: dict, label, window_end_ms: int) -> Prediction | None:
        """Predict on one feature row, then learn what its label allows; returns the prediction.

        Windows reach a key in event-time order, so a row no later than the key's last window is a
        replay (a source re-reading after an upgrade): it is counted and skipped, not learned twice."""
        if window_end_ms <= state.last_window_end_ms:
            state.replayed_windows += 1
            return None
        y_pred = self.predict(state, x)
        prediction = Prediction(window_end_ms, as_number(y_pred), state.model_version)
        delay = self.settings.label_delay_windows
        if delay == 0:
            self._learn(state, x, y_pred, label)
        else:
            labelled = state.pending.pop(window_end_ms - delay * self.settings.window_ms, None)
            if labelled is not None:
                self._learn(state, *labelled, label)
            state.pending[window_end_ms] = (x, y_pred)
            while len(state.pending) > self.settings.max_pending_windows:
                del state.pending[min(state.pending)]
                state.pending_dropped += 1
        state.last_window_end_ms = window_end_ms
        return prediction

    def _learn(self, state: KeyState, x: dict, y_pred, y) -> None:
        if y is None:
            state.unlabeled += 1
            return
        if y_pred != {} and y_pred is not None:
            state.metric.update(y_true=y, y_pred=y_pred)
        state.model.learn_one(x, y)
        state.n_learned += 1
        state.model_version += 1

    def snapshot_due(self, state: KeyState) -> bool:
        """Whether the count-based policies want a snapshot now; `every_seconds` uses timers instead."""
        unpublished = state.model_version - state.published_version
        if self.settings.snapshot_policy == "every_window":
            return unpublished > 0
        if self.settings.snapshot_policy == "every_n_updates":
            return unpublished >= self.settings.snapshot_every_n
        return False

    def snapshot(self, key: str, state: KeyState, watermark_ms: int, now_ms: int) -> bytes:
        """The envelope of the key's current model; marks that version as published."""
        value = state.metric.get()
        state.published_version = state.model_version
        return encode(Snapshot(
            key=key,
            model_version=state.model_version,
            n_learned=state.n_learned,
            metric_name=type(state.metric).__name__,
            metric_value=value if isinstance(value, (int, float)) and math.isfinite(value) else None,
            window_end_ms=state.last_window_end_ms,
            watermark_ms=watermark_ms,
            emitted_at_ms=now_ms,
            feature_schema_hash=self.schema_hash,
            payload=dump_model(state.model),
        ))

