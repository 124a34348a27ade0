"""The learner as a Flink KeyedProcessFunction: a `KeyState` per key in a ValueState.

Feature rows come in as (key, window end, label, *features); predictions go out as PREDICTION_TYPE
rows and model snapshots to the SNAPSHOTS side output. The logic lives in `udfs.learner`.
"""

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, MapFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from udfs.envelope import feature_schema_hash
from udfs.feature_records import encode_features
from udfs.learner import KeyState, Learner, LearnerSettings, migrate

PREDICTION_TYPE = Types.ROW_NAMED(
    ["model_key", "window_end_ms", "prediction", "model_version"],
    [Types.STRING(), Types.LONG(), Types.DOUBLE(), Types.LONG()],
)
SNAPSHOT_TYPE = Types.ROW_NAMED(["model_key", "envelope"], [Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
SNAPSHOTS = OutputTag("model-snapshots", SNAPSHOT_TYPE)
FEATURE_RECORD_TYPE = Types.ROW_NAMED(["model_key", "record"], [Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])


def epoch_ms(timestamp) -> int:
    """Window ends arrive as datetimes (naive ones in local time, as PyFlink makes them) or as epoch ms."""
    if isinstance(timestamp, int):
        return timestamp
    return int(round(timestamp.timestamp() * 1000))


class LearnerFunction(KeyedProcessFunction):
    """Feature rows in (key, window end, label, *features); predictions out, snapshots to SNAPSHOTS."""

    def __init__(self, settings: LearnerSettings):
        self.settings = settings

    def open(self, runtime_context: RuntimeContext):
        self.learner = Learner(self.settings)
        self.feature_names = self.settings.feature_names
        self.state = runtime_context.get_state(ValueStateDescriptor("learner-state", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, row, ctx: KeyedProcessFunction.Context):
        key, window_end, label = row[0], row[1], row[2]
        stored = self.state.value()
        state = migrate(stored) if stored is not None else self.learner.new_state()
        x = dict(zip(self.feature_names, row[3:]))
        prediction = self.learner.process(state, x, label, epoch_ms(window_end))
        if self.learner.snapshot_due(state):
            yield SNAPSHOTS, self._snapshot(key, state, ctx)
        elif self.settings.snapshot_policy == "every_seconds" and state.pending_timer_ms == 0:
            state.pending_timer_ms = ctx.timer_service().current_processing_time() + self.settings.snapshot_every_ms
            ctx.timer_service().register_processing_time_timer(state.pending_timer_ms)
        self.state.update(state)
        if prediction is not None:
            yield Row(key, prediction.window_end_ms, prediction.prediction, prediction.model_version)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        stored = self.state.value()
        if stored is None:
            return
        state = migrate(stored)
        state.pending_timer_ms = 0
        if state.model_version > state.published_version:
            yield SNAPSHOTS, self._snapshot(ctx.get_current_key(), state, ctx)
        self.state.update(state)

    def _snapshot(self, key, state: KeyState, ctx) -> Row:
        timers = ctx.timer_service()
        envelope = self.learner.snapshot(key, state, timers.current_watermark(), timers.current_processing_time())
        return Row(key, envelope)


class FeatureRecordFunction(MapFunction):
    """Feature rows in, (key, udfs.feature_records bytes) out: each key's latest features for serving."""

    def __init__(self, feature_names):
        self.feature_names = tuple(feature_names)
        self.schema_hash = feature_schema_hash(self.feature_names)

    def map(self, row):
        features = dict(zip(self.feature_names, row[3:]))
        return Row(row[0], encode_features(row[0], epoch_ms(row[1]), self.schema_hash, features))
