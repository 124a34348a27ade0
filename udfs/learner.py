"""Test-then-train, one River model per key: predict on each feature row, then learn from it.

`Learner` is the logic, with no Flink in it; `udfs.learner_function.LearnerFunction` runs it in Flink,
keeping a `KeyState` per key in keyed state. The model-safety guards of `SafetySettings` (drift,
gated publishing and rollback, a challenger, a cold-start prior, a data-quality guard) each live in
a module of their own and are off unless `safety:` in the job's config turns them on.

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
import time
from typing import Any

import cloudpickle

from jobs.config import whole_number
from udfs.bootstrap import BOOTSTRAP_MODES
from udfs.challenger import ChallengerSettings, Duel, challenger_wins
from udfs.cold_start import Prior, PriorSettings, load_template
from udfs.drift import DriftSettings, DriftWatch, prediction_error
from udfs import feature_types
from udfs.empty_windows import EmptyWindows
from udfs.idle_keys import idle_ttl_ms
from udfs.envelope import EnvelopeError, Snapshot, dump_model, encode, feature_schema_hash
from udfs.gate import GateSettings, GateState, PublishedVersion, rolling, value_of, worse_by_more_than
from udfs.model_spec import ModelSpecError, build_metric, build_model, is_classifier
from udfs.prediction import kind_of, published, raw_prediction
from udfs.quality import FeatureStats, QualitySettings, check
from udfs.safe_pickle import ModelClasses, declared_classes
from udfs.signing import Keyring, SigningSettings

log = logging.getLogger(__name__)

STATE_SCHEMA_VERSION = 3
SNAPSHOT_POLICIES = ("every_n_updates", "every_window", "every_seconds")


@dataclasses.dataclass
class KeyState:
    """Everything the job knows about one key; one Flink ValueState holds it."""

    model: Any
    metric: Any
    n_learned: int = 0
    # Grows by one per update and never goes back, across restarts, resets and rollbacks alike.
    model_version: int = 0
    published_version: int = 0
    last_window_end_ms: int = 0
    # window end -> (features, prediction) of rows waiting for their delayed label.
    pending: dict = dataclasses.field(default_factory=dict)
    pending_dropped: int = 0
    # Rows for a window this key has already learned: a source replay after an upgrade, skipped.
    replayed_windows: int = 0
    unlabeled: int = 0
    schema_version: int = STATE_SCHEMA_VERSION
    # Since schema 2: the model version of the last snapshot the gate held back.
    held_version: int = 0
    # What the model started from: "" (untrained), "global" or "template".
    prior: str = ""
    drift: DriftWatch | None = None
    gate: GateState | None = None
    duel: Duel | None = None
    quality: FeatureStats | None = None
    # Since schema 3: the lineage of the key's model, the submit time (ms) of the job that created this
    # state (`LearnerSettings.generation`); kept on restore, 0 for states created before lineages.
    # Its envelopes carry it, and replicas order a key's envelopes by (generation, model_version).
    generation: int = 0


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


@dataclasses.dataclass(frozen=True)
class SafetySettings:
    drift: DriftSettings = DriftSettings()
    gate: GateSettings = GateSettings()
    challenger: ChallengerSettings = ChallengerSettings()
    cold_start: PriorSettings = PriorSettings()
    quality: QualitySettings = QualitySettings()

    @classmethod
    def from_config(cls, config) -> "SafetySettings":
        section = config.get("safety", None) or {}
        kinds = {"drift": DriftSettings, "gate": GateSettings, "challenger": ChallengerSettings,
                 "cold_start": PriorSettings, "quality": QualitySettings}
        if unknown := set(section) - set(kinds):
            raise config.error("safety", f"has unknown part(s) {', '.join(sorted(unknown))}; it has {', '.join(kinds)}")
        parts = {}
        for name, kind in kinds.items():
            part = section.get(name) or {}
            if not isinstance(part, dict):
                raise config.error(f"safety.{name}", f"must be a mapping, not {part!r}")
            parts[name] = kind.from_config(part, config.error)
        safety = cls(**parts)
        if safety.drift.action == "promote_challenger" and not safety.challenger.enabled:
            raise config.error("safety.drift.action", "promote_challenger needs safety.challenger.enabled: true")
        return safety


@dataclasses.dataclass(frozen=True)
class LearnerSettings:
    model: dict
    metric: dict
    feature_names: tuple
    window_ms: int
    # Each feature's type (udfs/feature_types.py), in feature_names' order, read by the job from the feature
    # view's SQL column types and published in every envelope; empty: every feature a number.
    feature_types: tuple = ()
    label_delay_windows: int = 0
    max_pending_windows: int = 100
    # The label of a window in which the key has no row (features.empty_window_label; None: not
    # declared, and a row whose label window closes without a row of the key is dropped and counted).
    empty_window_label: Any = None
    snapshot_policy: str = "every_n_updates"
    snapshot_every_n: int = 10
    snapshot_every_ms: int = 5000
    # every_n_updates: how long an unpublished update may wait for the Nth (0: as long as it takes).
    snapshot_max_wait_ms: int = 0
    safety: SafetySettings = SafetySettings()
    # Feature rows reach the learner grouped per (shard of the key, window): udfs/feature_batches.py.
    shards: int = 4
    # Keys whose state the learner keeps unpickled between batches (0: none).
    state_cache_keys: int = 10_000
    # Calls into the learner (one per watermark that closes windows) between writes of a shard's
    # changed states to Flink state: udfs/learner_function.py.
    state_write_every: int = 8
    # Event time without a row after which a key's state is removed (lifecycle.idle_ttl_seconds; 0:
    # never): udfs/idle_keys.py.
    idle_ttl_ms: int = 0
    # (bootstrap servers, snapshot topic) when keys without state start from their newest snapshot:
    # udfs/bootstrap.py.
    bootstrap_from: tuple | None = None
    # The cold-start template's pickled model, read and verified at submit time so that it ships with the job.
    prior_template: bytes | None = dataclasses.field(default=None, repr=False)
    # The job's lineage: its submit time in ms, given to the keys whose state it creates (KeyState.generation).
    generation: int = 0
    # The key files envelopes are signed with and verified by (only paths: each process reads the keys).
    signing: SigningSettings = SigningSettings()
    # What model payloads read back (snapshots to start from, the template) may name: udfs/safe_pickle.py.
    model_classes: ModelClasses = ModelClasses()

    @classmethod
    def from_config(cls, config) -> "LearnerSettings":
        policy = config.get("snapshots.policy", "every_n_updates")
        if policy not in SNAPSHOT_POLICIES:
            raise config.error("snapshots.policy", f"must be one of {', '.join(SNAPSHOT_POLICIES)}, not {policy!r}")
        columns = config["features.columns"]
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise config.error("features.columns", "must be a non-empty list of column names")
        delay = whole_number(config, "features.label_delay_windows", 0, minimum=0)
        empty = EmptyWindows.from_config(config)
        safety = SafetySettings.from_config(config)
        shards = whole_number(config, "learner.shards", 4, minimum=1)
        cache_keys = whole_number(config, "learner.state_cache_keys", 10_000, minimum=0)
        write_every = whole_number(config, "learner.state_write_every", 8, minimum=1)
        bootstrap = config.get("learner.bootstrap", "none")
        if bootstrap not in BOOTSTRAP_MODES:
            raise config.error("learner.bootstrap", f"must be one of {', '.join(BOOTSTRAP_MODES)}, not {bootstrap!r}")
        template = safety.cold_start.template
        signing = SigningSettings.from_config(config)
        classes = declared_classes(config)
        return cls(
            model=config["model"],
            metric=config["metric"],
            feature_names=tuple(columns),
            window_ms=int(float(config["window.size_seconds"]) * 1000),
            label_delay_windows=delay,
            max_pending_windows=int(config.get("features.max_pending_windows", 100)),
            empty_window_label=empty.label,
            snapshot_policy=policy,
            snapshot_every_n=int(config.get("snapshots.every_n_updates", 10)),
            snapshot_every_ms=int(float(config.get("snapshots.every_seconds", 5)) * 1000),
            snapshot_max_wait_ms=int(float(config.get("snapshots.max_wait_seconds", 0)) * 1000),
            safety=safety,
            shards=shards,
            state_cache_keys=cache_keys,
            state_write_every=write_every,
            idle_ttl_ms=idle_ttl_ms(config),
            bootstrap_from=((config["kafka.bootstrap_servers"], config["topics.snapshots.name"])
                            if bootstrap == "snapshots" else None),
            prior_template=(load_template(config.file_path(template), columns, config.error,
                                          signing.keyring(config.error), classes) if template else None),
            # Submit time: a job started afresh outranks every model of the jobs before it in serving.
            generation=time.time_ns() // 1_000_000,
            signing=signing,
            model_classes=classes,
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


class Learner:
    def __init__(self, settings: LearnerSettings, keyring: Keyring):
        self.settings = settings
        # Signs every envelope; verifies none (what the learner reads back is verified where it is read).
        self.keyring = keyring
        self.classes = settings.model_classes
        self.safety = settings.safety
        self.schema_hash = feature_schema_hash(settings.feature_names)
        self.feature_types = feature_types.schema(settings.feature_names, settings.feature_types)
        # Built once here, so that a bad spec fails at submit time; new keys unpickle these
        # prototypes, several times faster than building from the spec.
        model = build_model(settings.model)
        metric = build_metric(settings.metric)
        self._prototypes = {"model": cloudpickle.dumps(model), "metric": cloudpickle.dumps(metric)}
        if self.safety.challenger.enabled:
            challenger = build_model(self.safety.challenger.model, "safety.challenger.model")
            if is_classifier(challenger) != is_classifier(model):
                raise ModelSpecError("safety.challenger.model: must be a classifier exactly when model is one")
            self._prototypes["challenger"] = cloudpickle.dumps(challenger)
        # The same choice as river.evaluate.progressive_val_score, so metrics agree with it exactly.
        self.predicts_proba = is_classifier(model) and not metric.requires_labels
        self.classifier = is_classifier(model)
        if self.predicts_proba and not kind_of(model).has_probabilities:
            raise ModelSpecError(f"metric.class: {type(metric).__name__} scores probabilities, which "
                                 f"{type(model).__name__} does not give; choose a metric of labels (metrics.Accuracy)")
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
        return KeyState(model=self.prior.new_model(), metric=self.new_metric(), prior=prior,
                        generation=self.settings.generation)

    def state_from_snapshot(self, snapshot) -> KeyState:
        """A key's state started from its newest published (and verified) envelope (udfs/bootstrap.py):
        its model, count, version, generation and last window carry on; the metric and the guards start
        over. A payload the allow-list refuses starts the key afresh, in this job's generation."""
        try:
            model = snapshot.model(self.classes)
        except EnvelopeError as e:
            log.warning("bootstrap: key %r starts afresh: %s", snapshot.key, e)
            return self.new_state()
        return KeyState(model=model, metric=self.new_metric(), n_learned=snapshot.n_learned,
                        model_version=snapshot.model_version, published_version=snapshot.model_version,
                        last_window_end_ms=snapshot.window_end_ms, prior="snapshot", generation=snapshot.generation)

    def predict(self, model, x: dict):
        """What the metric scores: probabilities or a label, as progressive_val_score asks for them."""
        probabilities, label = raw_prediction(model, x, kind_of(model))
        return probabilities if self.predicts_proba else label

    def _outputs(self, model, x: dict):
        """(what the metric scores, what is published) for one row, from as few calls into the model as its kind allows."""
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
        self._add_missing_guards(state)
        if self.settings.label_delay_windows and state.pending:
            # Rows whose label window passed without a row of this key (rows reach a key in window
            # order) take the empty window's label before this row is predicted. The Flink learner has
            # closed those windows already, when the watermark passed them (udfs/learner_function.py).
            self.close_windows(state, window_end_ms - 1)
        y_pred, answer = self._outputs(state.model, x)
        prediction = Prediction(window_end_ms, answer.prediction, state.model_version, answer.predicted,
                                answer.probabilities)
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
                steps.append(self._learn(state, x, y_pred, label, Prediction(end + delay_ms, None, state.model_version)))
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
            state.duel = Duel(champion_recent=rolling(self.new_metric(), window),
                              challenger_recent=rolling(self.new_metric(), window),
                              challenger=self.new_model("challenger"), metric=self.new_metric())
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
            state.drift is not None and scored
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
        return worse_by_more_than(value_of(gate.served_live), gate.published.metric_value,
                                  self.safety.gate.rollback_margin, gate.served_live)

    @property
    def snapshot_wait_ms(self) -> int:
        """How long, in processing time, a key's first unpublished update may wait for a snapshot before a
        timer publishes it; 0 for no timer. `every_seconds` publishes only so; `every_n_updates` so
        too when N updates take longer than `snapshots.max_wait_seconds`, so that no key (a quiet one,
        a new one with fewer than N rows) waits for its model without bound."""
        if self.settings.snapshot_policy == "every_seconds":
            return self.settings.snapshot_every_ms
        if self.settings.snapshot_policy == "every_n_updates":
            return self.settings.snapshot_max_wait_ms
        return 0

    def snapshot_due(self, state: KeyState) -> bool:
        """Whether the count-based policies want a snapshot now; `every_seconds` uses timers instead."""
        unpublished = state.model_version - max(state.published_version, state.held_version)
        if self.settings.snapshot_policy == "every_window":
            return unpublished > 0
        if self.settings.snapshot_policy == "every_n_updates":
            return unpublished >= self.settings.snapshot_every_n
        return False

    def publish(self, key: str, state: KeyState, watermark_ms: int, now_ms: int) -> bytes | None:
        """The envelope of the key's current model, or None when the gate holds it back."""
        gate = state.gate
        recent = None
        if gate is not None:
            enough = len(gate.recent.window) >= self.safety.gate.min_rows
            recent = value_of(gate.recent) if enough else None
            baseline = gate.published.metric_value if gate.published else None
            # Against a baseline, too few recent rows is no evidence that the model is still good.
            if (baseline is not None and not enough) or worse_by_more_than(recent, baseline, self.safety.gate.margin, gate.recent):
                gate.held_back += 1
                state.held_version = state.model_version
                return None
        payload = dump_model(state.model)
        if gate is not None:
            gate.previous, gate.published = gate.published, PublishedVersion(state.model_version, recent, payload)
            if self.safety.gate.rollback:
                gate.served_model = pickle.loads(payload)
                gate.served_live = rolling(self.new_metric(), self.safety.gate.window)
        return self._envelope(key, state, payload, watermark_ms, now_ms)

    def rollback(self, key: str, state: KeyState, watermark_ms: int, now_ms: int) -> bytes:
        """Go back to the version published before the degraded one: a new version, the good model."""
        gate = state.gate
        bad, good = gate.published, gate.previous
        live = value_of(gate.served_live)
        state.model_version += 1
        state.model = pickle.loads(good.payload)
        gate.served_model = pickle.loads(good.payload)
        gate.served_live = rolling(self.new_metric(), self.safety.gate.window)
        gate.recent = rolling(self.new_metric(), self.safety.gate.window)
        gate.published, gate.previous = PublishedVersion(state.model_version, good.metric_value, good.payload), None
        gate.rollbacks += 1
        reason = (f"v{bad.version} scored {live:.3f} on live rows against {bad.metric_value:.3f} at publication "
                  f"(rollback margin {self.safety.gate.rollback_margin})")
        return self._envelope(key, state, good.payload, watermark_ms, now_ms, rollback={
            "from_version": bad.version, "to_version": good.version, "reason": reason})

    def _envelope(self, key, state: KeyState, payload: bytes, watermark_ms: int, now_ms: int, **extra) -> bytes:
        value = state.metric.get()
        state.published_version = state.model_version
        duel = state.duel
        if state.drift is not None:
            extra["drift"] = state.drift.summary()
        if state.gate is not None:
            extra["held_back"] = state.gate.held_back
        if state.prior:
            extra["prior"] = state.prior
        if duel is not None:
            extra["champion"] = duel.champion_role
            extra["challenger"] = {"role": duel.challenger_role(), "metric_value": value_of(duel.metric)}
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
            payload=payload,
            extra=extra,
            challenger_payload=dump_model(duel.challenger) if duel is not None else b"",
            generation=state.generation,
            feature_types=self.feature_types,
        ), self.keyring)
