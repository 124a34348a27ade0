"""When a key's model is published, and the envelope it is published in: `Publisher`, a part of `Learner`.

The snapshot policy (`snapshots.policy`) says when: `every_n_updates`, `every_window`, or
`every_seconds` (by a processing-time timer, udfs/learner_function.py). The publishing gate
(udfs/gate.py) may hold a snapshot back, and rollback publishes the version before a degraded one
again. Every envelope (udfs/envelope.py) carries the key's model-safety facts in its `extra`.

>>> from udfs.envelope import EXTRA_DRIFT, decode
>>> from udfs.learner import Learner
>>> from udfs.learner_settings import LearnerSettings, SafetySettings
>>> from udfs.drift import DriftSettings
>>> from udfs.signing import Keyring
>>> keyring = Keyring({"k1": b"s" * 32}, signing_key_id="k1")
>>> learner = Learner(LearnerSettings(
...     model={"steps": [{"class": "linear_model.LogisticRegression"}]}, metric={"class": "metrics.Accuracy"},
...     feature_names=("x",), window_ms=1000, snapshot_policy="every_window",
...     safety=SafetySettings(drift=DriftSettings(enabled=True))), keyring)
>>> state = learner.new_state()
>>> learner.snapshot_due(state), learner.snapshot_wait_ms
(False, 0)
>>> step = learner.process(state, {"x": 1.0}, True, window_end_ms=1000)
>>> learner.snapshot_due(state)
True
>>> snapshot = decode(learner.publish("k", state, watermark_ms=999, now_ms=1500), keyring)
>>> snapshot.model_version, snapshot.extra[EXTRA_DRIFT]["count"], learner.snapshot_due(state)
(1, 0, False)
"""

from __future__ import annotations

import math
import pickle

from udfs.envelope import Snapshot, dump_model, encode
from udfs.envelope import EXTRA_CHALLENGER, EXTRA_CHAMPION, EXTRA_DRIFT, EXTRA_HELD_BACK, EXTRA_PRIOR, EXTRA_ROLLBACK
from udfs.gate import PublishedVersion, rolling, value_of, worse_by_more_than
from udfs.key_state import KeyState


class Publisher:
    """The publishing half of `udfs.learner.Learner`, which supplies `settings`, `safety`, `keyring`,
    `schema_hash`, `feature_types` and `new_metric`. A part of the learner rather than an object of its
    own: the Flink wrapper asks the one learner both what a row teaches and when to publish."""

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
            if (baseline is not None and not enough) or worse_by_more_than(
                recent, baseline, self.safety.gate.margin, gate.recent
            ):
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
        reason = (
            f"v{bad.version} scored {live:.3f} on live rows against {bad.metric_value:.3f} at publication "
            f"(rollback margin {self.safety.gate.rollback_margin})"
        )
        return self._envelope(
            key,
            state,
            good.payload,
            watermark_ms,
            now_ms,
            {EXTRA_ROLLBACK: {"from_version": bad.version, "to_version": good.version, "reason": reason}},
        )

    def _envelope(
        self, key, state: KeyState, payload: bytes, watermark_ms: int, now_ms: int, extra: dict | None = None
    ) -> bytes:
        extra = {} if extra is None else extra
        value = state.metric.get()
        state.published_version = state.model_version
        duel = state.duel
        if state.drift is not None:
            extra[EXTRA_DRIFT] = state.drift.summary()
        if state.gate is not None:
            extra[EXTRA_HELD_BACK] = state.gate.held_back
        if state.prior:
            extra[EXTRA_PRIOR] = state.prior
        if duel is not None:
            extra[EXTRA_CHAMPION] = duel.champion_role
            extra[EXTRA_CHALLENGER] = {"role": duel.challenger_role(), "metric_value": value_of(duel.metric)}
        return encode(
            Snapshot(
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
            ),
            self.keyring,
        )
