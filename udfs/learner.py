"""Test-then-train, one River model per key: predict on each feature row, then learn from it.

`Learner` is the logic, with no Flink in it; `udfs.learner_function.LearnerFunction` runs it in Flink,
keeping a `KeyState` per key in keyed state. The model-safety guards of `SafetySettings` (drift,
gated publishing and rollback, a challenger, a cold-start prior, a data-quality guard) each live in
a module of their own and are off unless `safety:` in the job's config turns them on. Around the
algorithm here: the per-key state and its migration (udfs/key_state.py), the settings read from the
job's config (udfs/learner_settings.py), and when and how a key's model is published
(udfs/publishing.py, the `Publisher` part of `Learner`).

>>> from udfs.signing import Keyring
>>> learner = Learner(LearnerSettings(
...     model={"steps": [{"class": "linear_model.LogisticRegression"}]},
...     metric={"class": "metrics.Accuracy"}, feature_names=("x",), window_ms=1000, generation=1700000000000),
...     Keyring({"k1": b"s" * 32}, signing_key_id="k1"))
>>> state = learner.new_state()
>>> first = learner.process(state, {"x": 1.0}, True, window_end_ms=1000).prediction
>>> (first.prediction, first.predicted, first.model_version, state.n_learned, state.model_version, state.generation)
(0.5, 'false', 0, 1, 1, 1700000000000)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle

from udfs import feature_types, prototypes
from udfs.challenger import Duel, challenger_wins
from udfs.cold_start import Prior
from udfs.drift import DriftWatch, prediction_error
from udfs.envelope import EnvelopeError, feature_schema_hash
from udfs.gate import GateState, rolling, value_of, worse_by_more_than

# Re-exported: importers (udfs/learner_function.py, jobs/learner_job.py, tests/golden) and every pickled
# state name them here, as before the state, the settings and publishing had modules of their own.
from udfs.key_state import STATE_SCHEMA_VERSION, KeyState, StateSchemaError, migrate
from udfs.learner_settings import SNAPSHOT_POLICIES, LearnerSettings, SafetySettings
from udfs.model_spec import ModelSpecError, build_metric, build_model, is_classifier
from udfs.prediction import kind_of, published, raw_prediction
from udfs.publishing import Publisher
from udfs.quality import FeatureStats, check
from udfs.signing import Keyring

__all__ = [
    "STATE_SCHEMA_VERSION",
    "SNAPSHOT_POLICIES",
    "KeyState",
    "Learner",
    "LearnerSettings",
    "Prediction",
    "SafetySettings",
    "StateSchemaError",
    "Step",
    "migrate",
    "non_finite",
]

log = logging.getLogger(__name__)


# Made for every row: a frozen dataclass costs four times as much to make.
@dataclasses.dataclass(slots=True)
class Prediction:
    """One published prediction: `prediction`, `predicted` and `probabilities` as udfs/prediction.py makes them."""

    window_end_ms: int
    prediction: float | None
    model_version: int
    predicted: str | None = None
    probabilities: dict | None = None


# Made for every row: a frozen dataclass costs four times as much to make.
@dataclasses.dataclass(slots=True)
class Step:
    """What one feature row led to, besides the key's state."""

    prediction: Prediction | None
    # Why the row was not learned (the data-quality guard), or None.
    quarantined: str | None = None
    drifted: bool = False
    # The served model degraded: `Learner.rollback` makes the rollback record.
    rollback_due: bool = False


def non_finite(x: dict, prediction: float | None) -> str | None:
    """Why a row must not be learned because a number in it is not finite, or None.

    >>> non_finite({"a": 1.0, "b": float("inf")}, 0.5)
    'non-finite feature b=inf'
    >>> non_finite({"a": 1.0}, float("nan")), non_finite({"a": 1.0}, 0.5)
    ('non-finite prediction nan', None)
    """
    for name, value in x.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"non-finite feature {name}={value}"
    if prediction is not None and not math.isfinite(prediction):
        return f"non-finite prediction {prediction}"
    return None


def _scored(y_pred) -> bool:
    return y_pred is not None and y_pred != {}


class Learner(Publisher):
    """One job's learning for all of its keys: each key's `KeyState` is passed in, the learner keeps none."""

    def __init__(self, settings: LearnerSettings, keyring: Keyring):
        self.settings = settings
        # Signs every envelope; verifies none (what the learner reads back is verified where it is read).
        self.keyring = keyring
        self.classes = settings.model_classes
        self.safety = settings.safety
        # Read once: with no guard on (the default), a row skips looking for missing ones.
        self.guarded = settings.safety.guards_any_key
        self.schema_hash = feature_schema_hash(settings.feature_names)
        self.feature_types = feature_types.schema(settings.feature_names, settings.feature_types)
        # Built once here, so that a bad spec fails at submit time; new keys unpickle these
        # prototypes, several times faster than building from the spec, into objects as quick to use
        # as built ones (udfs/prototypes.py).
        model = build_model(settings.model)
        metric = build_metric(settings.metric)
        self._prototypes = {"model": prototypes.dumps(model), "metric": prototypes.dumps(metric)}
        if self.safety.challenger.enabled:
            challenger = build_model(self.safety.challenger.model, "safety.challenger.model")
            if is_classifier(challenger) != is_classifier(model):
                raise ModelSpecError("safety.challenger.model: must be a classifier exactly when model is one")
            self._prototypes["challenger"] = prototypes.dumps(challenger)
        # The same choice as river.evaluate.progressive_val_score, so metrics agree with it exactly.
        self.predicts_proba = is_classifier(model) and not metric.requires_labels
        self.classifier = is_classifier(model)
        if self.predicts_proba and not kind_of(model).has_probabilities:
            raise ModelSpecError(
                f"metric.class: {type(metric).__name__} scores probabilities, which "
                f"{type(model).__name__} does not give; choose a metric of labels (metrics.Accuracy)"
            )
        # Where new keys start; the Flink wrapper swaps in the prior of the shard it learns.
        self.prior = self.shard_prior()

    def shard_prior(self, global_model=None) -> Prior:
        """A cold-start prior of its own for one shard of the keys, the `global` one's model restored
        from the shard's state when there is one (udfs/learner_function.py keeps it per shard)."""
        prior = Prior(self.safety.cold_start, self.settings.prior_template, self.new_model, self.classes)
        if global_model is not None:
            prior.global_model = global_model
        return prior

    def new_model(self, role: str = "model"):
        return pickle.loads(self._prototypes[role])

    def new_metric(self):
        return pickle.loads(self._prototypes["metric"])

    def new_state(self) -> KeyState:
        prior = self.prior.source()
        return KeyState(
            model=self.prior.new_model(), metric=self.new_metric(), prior=prior, generation=self.settings.generation
        )

    def state_from_snapshot(self, snapshot) -> KeyState:
        """A key's state started from its newest published (and verified) envelope (udfs/bootstrap.py):
        its model, count, version, generation and last window carry on; the metric and the guards start
        over. A payload the allow-list refuses starts the key afresh, in this job's generation."""
        try:
            model = snapshot.model(self.classes)
        except EnvelopeError as e:
            log.warning("bootstrap: key %r starts afresh: %s", snapshot.key, e)
            return self.new_state()
        return KeyState(
            model=model,
            metric=self.new_metric(),
            n_learned=snapshot.n_learned,
            model_version=snapshot.model_version,
            published_version=snapshot.model_version,
            last_window_end_ms=snapshot.window_end_ms,
            prior="snapshot",
            generation=snapshot.generation,
        )

    def predict(self, model, x: dict):
        """What the metric scores: probabilities or a label, as progressive_val_score asks for them."""
        probabilities, label = raw_prediction(model, x, kind_of(model))
        return probabilities if self.predicts_proba else label

    def _outputs(self, model, x: dict):
        """(what the metric scores, what is published) for one row, from as few calls into the model as
        its kind allows."""
        kind = kind_of(model)
        probabilities, label = raw_prediction(model, x, kind)
        return (probabilities if self.predicts_proba else label), published(probabilities, label, kind)

    def process(self, state: KeyState, x: dict, label, window_end_ms: int) -> Step:
        """Predict on one feature row, then learn what its label allows.

        Windows reach a key in event-time order, so a row no later than the key's last window is a
        replay (a source re-reading after an upgrade): it is counted and skipped, not learned twice."""
        if window_end_ms <= state.last_window_end_ms:
            state.replayed_windows += 1
            return Step(None)
        if self.guarded:
            self._add_missing_guards(state)
        if self.settings.label_delay_windows and state.pending:
            # Rows whose label window passed without a row of this key (rows reach a key in window
            # order) take the empty window's label before this row is predicted. The Flink learner has
            # closed those windows already, when the watermark passed them (udfs/learner_function.py).
            self.close_windows(state, window_end_ms - 1)
        y_pred, answer = self._outputs(state.model, x)
        prediction = Prediction(
            window_end_ms, answer.prediction, state.model_version, answer.predicted, answer.probabilities
        )
        state.last_window_end_ms = window_end_ms
        if reason := non_finite(x, prediction.prediction):
            # The last line behind the SQL checks (an average can overflow): learning it would turn the
            # model's weights into NaN for good.
            return Step(Prediction(window_end_ms, None, state.model_version), quarantined=reason)
        if state.quality is not None:
            state.quality.observe(x)
            if reason := check(self.safety.quality, state.quality, x):
                state.quality.quarantined += 1
                return Step(prediction, quarantined=reason)
            state.quality.learn(x)
        delay = self.settings.label_delay_windows
        if delay == 0:
            return self._learn(state, x, y_pred, label, prediction)
        step = Step(prediction)
        labelled = state.pending.pop(window_end_ms - delay * self.settings.window_ms, None)
        if labelled is not None:
            step = self._learn(state, *labelled, label, prediction)
        state.pending[window_end_ms] = (x, y_pred)
        while len(state.pending) > self.settings.max_pending_windows:
            del state.pending[min(state.pending)]
            state.pending_dropped += 1
        return step

    def waits_for(self, state: KeyState, label_end_ms: int) -> bool:
        """Whether the key has a row waiting for the label of a window ending by `label_end_ms`."""
        delay_ms = self.settings.label_delay_windows * self.settings.window_ms
        return any(end + delay_ms <= label_end_ms for end in state.pending)

    def close_windows(self, state: KeyState, closed_through_ms: int) -> tuple[list, int]:
        """The windows ending by `closed_through_ms` have closed without a row of this key: each row
        waiting for one of their labels learns with `empty_window_label`, in window order, or without
        one declared is dropped (`pending_dropped`). Returns (the learned rows' steps, rows dropped)."""
        delay_ms = self.settings.label_delay_windows * self.settings.window_ms
        closed = sorted(end for end in state.pending if end + delay_ms <= closed_through_ms)
        steps, label = [], self.settings.empty_window_label
        for end in closed:
            x, y_pred = state.pending.pop(end)
            if label is None:
                state.pending_dropped += 1
            else:
                steps.append(
                    self._learn(state, x, y_pred, label, Prediction(end + delay_ms, None, state.model_version))
                )
        return steps, len(closed) - len(steps)

    def _add_missing_guards(self, state: KeyState) -> None:
        """Guards turned on since this key's state was written (by an upgrade) start here."""
        safety = self.safety
        if safety.drift.enabled and state.drift is None:
            state.drift = DriftWatch.new(safety.drift)
        if safety.gate.enabled and state.gate is None:
            state.gate = GateState(recent=rolling(self.new_metric(), safety.gate.window))
        if safety.challenger.enabled and state.duel is None:
            window = safety.challenger.window
            state.duel = Duel(
                champion_recent=rolling(self.new_metric(), window),
                challenger_recent=rolling(self.new_metric(), window),
                challenger=self.new_model("challenger"),
                metric=self.new_metric(),
            )
        if safety.quality.enabled and state.quality is None:
            state.quality = FeatureStats()

    def _learn(self, state: KeyState, x: dict, y_pred, y, prediction: Prediction) -> Step:
        if y is None:
            state.unlabeled += 1
            return Step(prediction)
        scored = _scored(y_pred)
        if scored:
            state.metric.update(y_true=y, y_pred=y_pred)
        gate, duel = state.gate, state.duel
        if gate is not None:
            if scored:
                gate.recent.update(y, y_pred)
            if gate.served_model is not None and _scored(served := self.predict(gate.served_model, x)):
                gate.served_live.update(y, served)
        if duel is not None:
            if scored:
                duel.champion_recent.update(y, y_pred)
            if _scored(challenged := self.predict(duel.challenger, x)):
                duel.challenger_recent.update(y, challenged)
                duel.metric.update(y_true=y, y_pred=challenged)
            duel.challenger.learn_one(x, y)
        state.model.learn_one(x, y)
        if self.prior.learns:
            self.prior.learn(x, y)
        state.n_learned += 1
        state.model_version += 1
        drifted = (
            state.drift is not None
            and scored
            and state.drift.update(prediction_error(y_pred, y, self.classifier), prediction.window_end_ms)
        )
        if drifted:
            self._on_drift(state)
        elif duel is not None and challenger_wins(self.safety.challenger, duel):
            self._promote_challenger(state)
        return Step(prediction, drifted=drifted, rollback_due=self._rollback_due(state))

    def _on_drift(self, state: KeyState) -> None:
        action = state.drift.last_action = self.safety.drift.action
        if action == "reset":
            state.model = self.new_model(state.duel.champion_role if state.duel else "model")
        elif action == "promote_challenger":
            self._promote_challenger(state)
            state.duel.challenger = self.new_model(state.duel.challenger_role())  # the drifted one
        if action != "flag" and state.gate is not None:
            # The old concept's scores say nothing about the new one: the gate starts over.
            state.gate.recent = rolling(self.new_metric(), self.safety.gate.window)
            if state.gate.published is not None:
                state.gate.published = dataclasses.replace(state.gate.published, metric_value=None)

    def _promote_challenger(self, state: KeyState) -> None:
        duel = state.duel
        state.model, duel.challenger = duel.challenger, state.model
        state.metric, duel.metric = duel.metric, state.metric
        duel.champion_recent, duel.challenger_recent = duel.challenger_recent, duel.champion_recent
        duel.champion_role = duel.challenger_role()
        duel.promotions += 1

    def _rollback_due(self, state: KeyState) -> bool:
        gate = state.gate
        if gate is None or not self.safety.gate.rollback or gate.previous is None or gate.served_live is None:
            return False
        if len(gate.served_live.window) < self.safety.gate.min_rows:
            return False
        return worse_by_more_than(
            value_of(gate.served_live), gate.published.metric_value, self.safety.gate.rollback_margin, gate.served_live
        )
