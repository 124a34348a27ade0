"""The learner as a Flink KeyedProcessFunction: a `KeyState` per key in a ValueState.

Feature rows come in as (key, window end, label, *features); predictions go out as PREDICTION_TYPE
rows, model snapshots (and rollback records) to the SNAPSHOTS side output, drift events to DRIFTS,
and rows the data-quality guard keeps out of the model to QUARANTINED, shaped for the dead-letter
topic. The logic lives in `udfs.learner`.
"""

import json

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from udfs.learner import KeyState, Learner, LearnerSettings, Step, migrate

PREDICTION_TYPE = Types.ROW_NAMED(
    ["model_key", "window_end_ms", "prediction", "model_version"],
    [Types.STRING(), Types.LONG(), Types.DOUBLE(), Types.LONG()],
)
SNAPSHOT_TYPE = Types.ROW_NAMED(["model_key", "envelope"], [Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
SNAPSHOTS = OutputTag("model-snapshots", SNAPSHOT_TYPE)
DRIFT_TYPE = Types.ROW_NAMED(
    ["model_key", "window_end_ms", "model_version", "action", "drift_count", "detected_at_ms"],
    [Types.STRING(), Types.LONG(), Types.LONG(), Types.STRING(), Types.LONG(), Types.LONG()],
)
DRIFTS = OutputTag("drifts", DRIFT_TYPE)
# The dead-letter table's columns: the row as JSON, and headers naming why and where from.
QUARANTINE_TYPE = Types.ROW_NAMED(
    ["payload", "headers"],
    [Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.MAP(Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE()))],
)
QUARANTINED = OutputTag("quarantined", QUARANTINE_TYPE)


def epoch_ms(timestamp) -> int:
    """Window ends arrive as datetimes (naive ones in local time, as PyFlink makes them) or as epoch ms."""
    if isinstance(timestamp, int):
        return timestamp
    return int(round(timestamp.timestamp() * 1000))


def quarantine_record(key: str, window_end_ms: int, x: dict, label, reason: str) -> Row:
    """A quarantined feature row as a dead-letter record: the row as JSON, the reason as a header."""
    payload = json.dumps({"key": key, "window_end_ms": window_end_ms, "label": label, **x}).encode()
    return Row(payload, {"reason": reason.encode(), "source": b"learner.quality"})


class LearnerFunction(KeyedProcessFunction):
    """Feature rows in (key, window end, label, *features); predictions out, snapshots to SNAPSHOTS."""

    def __init__(self, settings: LearnerSettings):
        self.settings = settings

    def open(self, runtime_context: RuntimeContext):
        self.learner = Learner(self.settings)
        self.feature_names = self.settings.feature_names
        self.state = runtime_context.get_state(ValueStateDescriptor("learner-state", Types.PICKLED_BYTE_ARRAY()))
        metrics = runtime_context.get_metrics_group()
        self.counters = {name: metrics.counter(name) for name in (
            "quarantined_rows", "drifts_detected", "snapshots_published", "snapshots_held_back", "rollbacks",
        )}

    def process_element(self, row, ctx: KeyedProcessFunction.Context):
        key, window_end, label = row[0], row[1], row[2]
        stored = self.state.value()
        state = migrate(stored) if stored is not None else self.learner.new_state()
        x = dict(zip(self.feature_names, row[3:]))
        window_end_ms = epoch_ms(window_end)
        step = self.learner.process(state, x, label, window_end_ms)
        yield from self._side_outputs(key, state, step, x, label, ctx)
        if step.rollback_due:
            self.counters["rollbacks"].inc()
            yield SNAPSHOTS, Row(key, self.learner.rollback(key, state, *self._clock(ctx)))
        elif self.learner.snapshot_due(state):
            yield from self._publish(key, state, ctx)
        elif self.settings.snapshot_policy == "every_seconds" and state.pending_timer_ms == 0:
            state.pending_timer_ms = ctx.timer_service().current_processing_time() + self.settings.snapshot_every_ms
            ctx.timer_service().register_processing_time_timer(state.pending_timer_ms)
        self.state.update(state)
        if step.prediction is not None:
            p = step.prediction
            yield Row(key, p.window_end_ms, p.prediction, p.model_version)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        stored = self.state.value()
        if stored is None:
            return
        state = migrate(stored)
        state.pending_timer_ms = 0
        if state.model_version > max(state.published_version, state.held_version):
            yield from self._publish(ctx.get_current_key(), state, ctx)
        self.state.update(state)

    def _side_outputs(self, key, state: KeyState, step: Step, x, label, ctx):
        if step.quarantined is not None:
            self.counters["quarantined_rows"].inc()
            yield QUARANTINED, quarantine_record(key, state.last_window_end_ms, x, label, step.quarantined)
        if step.drifted:
            self.counters["drifts_detected"].inc()
            drift = state.drift
            yield DRIFTS, Row(key, drift.last_window_end_ms, state.model_version, drift.last_action, drift.count,
                              ctx.timer_service().current_processing_time())

    def _publish(self, key, state: KeyState, ctx):
        envelope = self.learner.publish(key, state, *self._clock(ctx))
        if envelope is None:
            self.counters["snapshots_held_back"].inc()
            return
        self.counters["snapshots_published"].inc()
        yield SNAPSHOTS, Row(key, envelope)

    @staticmethod
    def _clock(ctx) -> tuple:
        timers = ctx.timer_service()
        return timers.current_watermark(), timers.current_processing_time()

