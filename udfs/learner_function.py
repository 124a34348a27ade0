"""The learner as a Flink KeyedProcessFunction, keyed by shard: a `KeyState` per model key in a MapState.

Feature rows come in batches, one per shard and window from each upstream subtask
(`udfs.feature_batches`): (shard, window_end_ms, keys, labels, *feature arrays); a shard's batches that
one watermark closes come in one record, made and pickled together in the JVM
(java/realtime_learning/PickledBatches.java), so that a job catching up makes one call into Python per
shard and watermark, not one per window. A batch is not learned when it arrives but when the watermark
that closed its window follows it (an event-time timer): every batch of the shard that arrived before
that watermark is learned in that one call, in window order. A watermark closes one window in a live
stream, but many at once while a job catches up, so the calls grow fewer exactly when rows are many.
Waiting batches are in Flink state, so a checkpoint taken before their watermark keeps them. Each key's
state is read once per call and its rows are predicted then learned in window order; changed states are
written back every `learner.state_write_every` calls, in one call, with the batches learned since kept
in Flink state so that a restored job can learn them again. Keys whose unpublished updates wait longer
than `snapshots.max_wait_seconds` are published by one processing-time timer per shard
(`udfs.due_keys`). With delayed labels, a row whose label window closes without a row of its key learns
the empty window's label or is dropped and counted (`udfs.empty_windows`): each shard indexes its keys
with waiting rows by label window, and an event-time timer at each label window's end closes it even
when no batch of the shard comes. With `lifecycle.idle_ttl_seconds`, keys without a row for that long
are removed (`udfs.idle_keys`): each shard indexes its keys by their last window, and an event-time
timer at the oldest one's expiry wakes the shard; their tombstones go to SNAPSHOTS and
FEATURE_TOMBSTONES. A deletion request (a batch with a NULL window end,
`udfs.feature_batches.select_deletions`) removes its key the same way, at once. Predictions go out as
PREDICTION_TYPE rows, model snapshots (and rollback records) to the SNAPSHOTS side output, drift events
to DRIFTS, and rows the data-quality guard keeps out of the model to QUARANTINED, shaped for the
dead-letter topic. The logic lives in `udfs.learner`.

>>> cache = StateCache(capacity=2)
>>> cache.update({"a": 1, "b": 2}); cache.update({"c": 3})
>>> [cache.get(key) for key in ("a", "b", "c")]
[None, 2, 3]
>>> cache.discard("b"); cache.get("b")
"""

from __future__ import annotations

import collections
import gc
import importlib
import json
import logging
import math
import pickle
import threading
from collections import OrderedDict

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext, TimeDomain
from pyflink.datastream.state import ListStateDescriptor, MapStateDescriptor, ValueStateDescriptor


def in_python_thread(function, *args):
    """Call `function` on a thread that Python started, and wait for it.

    In thread mode (pemja) a Flink task thread runs Python on a thread state that
    `PyGILState_Ensure` does not know, so a pybind11 extension, which takes the GIL that way when it is
    first imported (SciPy's `scipy.spatial._distance_pybind`, imported by `river.metrics`), waits for
    the GIL its own thread holds, for ever. A thread started by `threading` is known to it."""
    outcome = {}

    def run():
        try:
            outcome["value"] = function(*args)
        except BaseException as e:  # re-raised on the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=run, name="learner-import")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


in_python_thread(importlib.import_module, "udfs.learner")
from udfs.bootstrap import newest_snapshots, read_snapshot_topic  # noqa: E402
from udfs.cold_start import Prior  # noqa: E402
from udfs.due_keys import DueKeys  # noqa: E402
from udfs.empty_windows import PendingKeys  # noqa: E402
from udfs.feature_batches import batch_rows, merged_windows, without_keys  # noqa: E402
from udfs.idle_keys import IdleKeys  # noqa: E402
from udfs.learner import KeyState, Learner, LearnerSettings, Step, migrate  # noqa: E402

log = logging.getLogger(__name__)

# sql/predictions.sql's columns, in its order.
PREDICTION_TYPE = Types.ROW_NAMED(
    ["model_key", "window_end_ms", "prediction", "model_version", "predicted", "probabilities"],
    [
        Types.STRING(),
        Types.LONG(),
        Types.DOUBLE(),
        Types.LONG(),
        Types.STRING(),
        Types.MAP(Types.STRING(), Types.DOUBLE()),
    ],
)
SNAPSHOT_TYPE = Types.ROW_NAMED(["model_key", "envelope"], [Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])


# The type of a record of columns out of the learner: one call's rows of a row type (PREDICTION_TYPE,
# SNAPSHOT_TYPE) as a tuple of columns, a tuple per field, pickled by the learner (`as_columns`). The
# JVM makes the rows again (java/realtime_learning/PickledColumnsToRows.java, jobs/learner_job.py): each
# record out of Python costs a pass through PyFlink's generators and a JNI call, and a record of arrays
# PyFlink converts element by element, a Python call and a Java object each, on the learner's thread.
PICKLED_COLUMNS = Types.PRIMITIVE_ARRAY(Types.BYTE())
# The pickle protocol of those records: one the JVM's reader (flink-python's Pyrolite) reads.
COLUMNS_PROTOCOL = 4


SNAPSHOTS = OutputTag("model-snapshots", PICKLED_COLUMNS)
# An expired key's tombstone for the features table (model_key, record NULL), beside its SQL-written rows.
FEATURE_TOMBSTONE_TYPE = Types.ROW_NAMED(["model_key", "record"], [Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
FEATURE_TOMBSTONES = OutputTag("feature-tombstones", FEATURE_TOMBSTONE_TYPE)
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


def quarantine_record(key: str, window_end_ms: int, x: dict, label, reason: str) -> Row:
    """A quarantined feature row as a dead-letter record: the row as JSON, the reason as a header."""
    # A non-finite number as text: JSON has no NaN or Infinity.
    row = {
        name: value if not isinstance(value, float) or math.isfinite(value) else str(value) for name, value in x.items()
    }
    payload = json.dumps({"key": key, "window_end_ms": window_end_ms, "label": label, **row}).encode()
    return Row(payload, {"reason": reason.encode(), "source": b"learner.quality"})


class StateCache:
    """The most recently used keys' states, unpickled, as last written to Flink state.

    Flink state stays the truth (every change is written back at the end of its batch); the cache
    only spares a read and an unpickle. A restarted task starts with an empty cache."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._states: OrderedDict = OrderedDict()

    def get(self, key: str):
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    def discard(self, key: str) -> None:
        self._states.pop(key, None)

    def update(self, states: dict) -> None:
        if self.capacity <= 0:
            return
        for key, state in states.items():
            self._states[key] = state
            self._states.move_to_end(key)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)


class ShardMemory:
    """What this process holds for one shard between calls: the states changed since they were written
    to Flink state, the calls since then, the keys waiting for a timed snapshot, the time of the
    processing-time timer set for them (None: none set by this process), and the shard's cold-start
    prior."""

    def __init__(self, due: DueKeys, prior: Prior, pending: PendingKeys, idle: IdleKeys | None = None):
        self.dirty: dict = {}
        self.calls_unwritten = 0
        self.due = due
        # The keys with rows waiting for a delayed label, by the end of their label window.
        self.pending = pending
        self.timer_ms: int | None = None
        self.prior = prior
        # The keys by their last window, for expiry (None: lifecycle.idle_ttl_seconds not set), and the
        # event-time timer set for the oldest (None: none set by this process).
        self.idle = idle
        self.expiry_timer_ms: int | None = None

    def forget(self, keys) -> None:
        """Remove `keys` (expired) from everything held here for them, the delayed-label index too."""
        for key in keys:
            self.dirty.pop(key, None)
            self.due.discard(key)
            if self.idle is not None:
                self.idle.discard(key)
        if self.pending:
            self.pending.discard(set(keys))


# The cyclic garbage collector's thresholds in the interpreter that runs the learner (in thread mode the
# TaskManager's one interpreter): a collection of the youngest objects every 20,000 new ones instead of
# Python's 700, the older generations as often relative to it as Python's defaults. River's models hold
# reference cycles (about 25 objects' worth each), so a dropped model is freed only by the collector,
# and it still is; but with Python's thresholds and a shard's models alive, the collections took a third
# of a plain Python replay of the learner's calls at 100,000 keys, and a tenth at 10,000.
GC_THRESHOLDS = (20_000, 20, 10)

# In `learned-unwritten-batches`, beside the batches: the keys a timer published, (shard, TIMED, keys),
# the label windows a watermark closed, (shard, CLOSED, closed through ms), and the keys that expired,
# (shard, EXPIRED, keys), and the keys deleted on request, (shard, DELETED, keys).
TIMED = None
CLOSED = "closed"
EXPIRED = "expired"
DELETED = "deleted"
# A batch's window end that marks it a deletion request (udfs.feature_batches.select_deletions).
DELETION = None


class LearnerFunction(KeyedProcessFunction):
    """Batches (shard, window_end_ms, keys, labels, *features) in; predictions out, snapshots to SNAPSHOTS."""

    def __init__(self, settings: LearnerSettings):
        self.settings = settings

    def open(self, runtime_context: RuntimeContext):
        gc.set_threshold(*GC_THRESHOLDS)
        # The signing keys are read here, from their files, so that they never travel in the job graph.
        keyring = self.settings.signing.keyring()
        # Building the models imports the River modules they name: on a Python thread too.
        self.learner = in_python_thread(Learner, self.settings, keyring)
        # Asked on every row; a property of the (frozen) settings, worked out once.
        self.snapshot_wait_ms = self.learner.snapshot_wait_ms
        self.feature_names = self.settings.feature_names
        self.states = runtime_context.get_map_state(
            MapStateDescriptor("learner-states", Types.STRING(), Types.PICKLED_BYTE_ARRAY())
        )
        # The shard's keys waiting for a timed snapshot (`Learner.snapshot_wait_ms`), as a `DueKeys` dict,
        # written with the states.
        self.due_keys = runtime_context.get_state(ValueStateDescriptor("snapshot-due-keys", Types.PICKLED_BYTE_ARRAY()))
        # The same, one entry per key, as releases before the due-key index kept it: read once per shard.
        self.timed_keys = runtime_context.get_map_state(
            MapStateDescriptor("snapshot-timers", Types.STRING(), Types.LONG())
        )
        # The shard's `global` cold-start prior's model, written with the states: a prior per shard,
        # whatever the parallelism, that a restored or rescaled job carries on.
        self.prior_models = runtime_context.get_state(
            ValueStateDescriptor("cold-start-prior", Types.PICKLED_BYTE_ARRAY())
        )
        # The shard's keys with rows waiting for a delayed label, as a `PendingKeys` dict, written with the states.
        self.pending_keys = runtime_context.get_state(
            ValueStateDescriptor("pending-label-keys", Types.PICKLED_BYTE_ARRAY())
        )
        self.delay_ms = self.settings.label_delay_windows * self.settings.window_ms
        self.ttl_ms = self.settings.idle_ttl_ms
        # The shard's keys by their last window (`IdleKeys` dict), written with the states; only with a TTL.
        self.idle_keys = runtime_context.get_state(ValueStateDescriptor("idle-keys", Types.PICKLED_BYTE_ARRAY()))
        # Batches that arrived before the watermark that closes their window.
        self.waiting = runtime_context.get_list_state(
            ListStateDescriptor("waiting-batches", Types.PICKLED_BYTE_ARRAY())
        )
        # Batches learned since the shard's states were last written to `states`. A key's state is not
        # pickled into `states` on every call (that pickle was a quarter of the learner's time at many
        # keys) but every `learner.state_write_every` calls; a job restored from a checkpoint taken in
        # between brings the states up to date by learning these batches again, sending nothing.
        self.unwritten = runtime_context.get_list_state(
            ListStateDescriptor("learned-unwritten-batches", Types.PICKLED_BYTE_ARRAY())
        )
        # Per shard learned in this process; a shard not here yet is brought up to date from `unwritten` first.
        self.shards: dict[int, ShardMemory] = {}
        # Shards with an event-time timer set for their waiting batches. Only a saving of calls: after a
        # restart it is empty, and the first batch sets a timer again (the restored one fires too).
        self.flush_timers: set = set()
        self.cache = StateCache(self.settings.state_cache_keys)
        # Newest snapshot per key, for keys this learner has no state for (learner.bootstrap: snapshots).
        self.seeds = {}
        if self.settings.bootstrap_from is not None:
            self.seeds = newest_snapshots(
                read_snapshot_topic(*self.settings.bootstrap_from), self.learner.schema_hash, keyring
            )
        metrics = runtime_context.get_metrics_group()
        # Counted here during a call, handed to Flink at its end (`_count`).
        self.counts = collections.Counter()
        self.counters = {
            name: metrics.counter(name)
            for name in (
                "quarantined_rows",
                "drifts_detected",
                "snapshots_published",
                "snapshots_held_back",
                "rollbacks",
                "replayed_rows",
                "pending_rows_dropped",
                "keys_expired",
                "keys_deleted",
            )
        }

    def _state(self, key: str) -> KeyState:
        state = self.cache.get(key)
        if state is None:
            stored = self.states.get(key)
            if stored is not None:
                return migrate(stored)
            seed = self.seeds.pop(key, None)
            state = self.learner.state_from_snapshot(seed) if seed is not None else self.learner.new_state()
        return state

    def process_element(self, batches, ctx: KeyedProcessFunction.Context):
        """A shard's batches since the last watermark, in the order they came, kept until the watermark
        that closes their window; a record ends at a deletion request, done at once after them."""
        *waiting, last = batches
        if last[1] is not DELETION:
            self._wait(batches, ctx)
            return
        if waiting:
            self._wait(waiting, ctx)
        yield from as_columns(self._delete(last[0], last[2], ctx))
        self._count()

    def _wait(self, batches, ctx) -> None:
        self.waiting.add_all(batches)
        shard = batches[0][0]
        if shard not in self.flush_timers:
            # The window operator sends a window's rows before the watermark that passes its last
            # millisecond, so this timer fires with that watermark, after every batch it closed.
            self.flush_timers.add(shard)
            ctx.timer_service().register_event_time_timer(min(batch[1] for batch in batches) - 1)

    def _learn_waiting(self, ctx):
        """Learn every waiting batch of the shard whose window the watermark has closed, in window order,
        the batches of one window from several upstream subtasks as one.

        A batch of a later window can wait beside them: at parallelism > 1 a faster upstream subtask
        sends it before the watermark passes its window, and a batch of an earlier window may still be
        on its way from another subtask. It waits for a timer of its own."""
        clock = _Clock(ctx)
        watermark = clock.now()[0]
        waiting = sorted(self.waiting.get(), key=lambda batch: batch[1])
        closed = sum(1 for batch in waiting if batch[1] - 1 <= watermark)
        batches, later = merged_windows(waiting[:closed]), waiting[closed:]
        if later:
            self.waiting.update(later)
            ctx.timer_service().register_event_time_timer(later[0][1] - 1)
        if not batches and not self.delay_ms and not self.ttl_ms:  # a restored timer beside one set since
            return
        # Without batches: a label window closing (the timer `_learn` set), keys expiring, or a restored timer.
        shard = batches[0][0] if batches else _shard_of(ctx)
        if not later:
            self.waiting.clear()
            self.flush_timers.discard(shard)
        memory = self._shard(shard, clock, ctx)
        for batch in batches:
            yield from self._learn(batch, memory, clock, ctx)
        learned = list(batches)
        # The watermark closed every window ending by watermark + 1 (a window's last millisecond is its end - 1).
        if (yield from self._close_windows(memory, watermark + 1, clock, ctx)):
            learned.append((shard, CLOSED, watermark + 1))
        if self.ttl_ms:
            expired = self._expire(memory, watermark + 1)
            if expired:
                self.counts["keys_expired"] += len(expired)
                learned.append((shard, EXPIRED, expired))
                for key in expired:
                    yield SNAPSHOTS, (key, None)
                    yield FEATURE_TOMBSTONES, Row(key, None)
            self._set_expiry_timer(memory, ctx)
        if learned:
            self._end_call(memory, learned)

    def _expire(self, memory: ShardMemory, closed_through_ms: int) -> tuple:
        """Remove the keys whose last window ended `ttl_ms` or more before `closed_through_ms` from every
        place the shard keeps them; the keys removed. Their tombstones are the caller's to send."""
        expired = tuple(memory.idle.pop_idle(closed_through_ms - self.ttl_ms))
        self._forget(memory, expired)
        return expired

    def _forget(self, memory: ShardMemory, keys) -> None:
        """Remove `keys` from every place the shard keeps them."""
        memory.forget(keys)
        for key in keys:
            self.cache.discard(key)
            self.seeds.pop(key, None)  # a key that comes back starts afresh, not from its last snapshot
            # At once, not at the next write-back: the checkpoint then holds the removal and the steps after
            # it in `unwritten`, which a restored job replays (the expiry among them) on top of it.
            self.states.remove(key)

    def _delete(self, shard: int, keys: tuple, ctx):
        """Delete `keys` on request: their states, their rows waiting for their window, their place in
        every index, and tombstones out. Recorded in `unwritten` like an expiry, so that a job restored
        from a checkpoint before the next write-back repeats it; a job restored from one before the
        request reads the request again and does it all again (a tombstone twice is harmless)."""
        memory = self._shard(shard, _Clock(ctx), ctx)
        for key in keys:
            log.info("deletion of key %r requested (shard %d)", key, shard)
        versions = [self._model_version(memory, key) for key in keys]
        self._forget(memory, keys)
        self._drop_waiting(set(keys))
        for key, version in zip(keys, versions):
            yield SNAPSHOTS, (key, None)
            yield FEATURE_TOMBSTONES, Row(key, None)
            if version is not None:
                self.counts["keys_deleted"] += 1
            log.info(
                "deletion of key %r done: %s",
                key,
                f"model version {version} removed" if version is not None else "it had no model",
            )
        self._end_call(memory, [(shard, DELETED, keys)])

    def _model_version(self, memory: ShardMemory, key: str) -> int | None:
        """The key's model version, None for a key without state; read without creating a state."""
        state = memory.dirty.get(key) or self.cache.get(key)
        if state is None:
            stored = self.states.get(key)
            state = migrate(stored) if stored is not None else None
        return state.model_version if state is not None else None

    def _drop_waiting(self, keys: set) -> None:
        """Remove `keys`' rows from the shard's batches waiting for their window to close."""
        waiting = list(self.waiting.get())
        kept = [batch for batch in (without_keys(batch, keys) for batch in waiting) if batch is not None]
        if len(kept) != len(waiting) or any(a is not b for a, b in zip(kept, waiting)):
            self.waiting.update(kept)

    def _set_expiry_timer(self, memory: ShardMemory, ctx) -> None:
        """An event-time timer at the oldest key's expiry: a shard whose keys all went silent gets no
        batch to wake it."""
        oldest = memory.idle.next_idle_ms()
        if oldest is not None and memory.expiry_timer_ms != oldest + self.ttl_ms - 1:
            memory.expiry_timer_ms = oldest + self.ttl_ms - 1
            ctx.timer_service().register_event_time_timer(memory.expiry_timer_ms)

    def _end_call(self, memory: ShardMemory, learned: list) -> None:
        """Write the shard's changed states back, or keep what the call `learned` for a restored job.

        Keeping the batches costs a pickle per batch, writing the states one per changed key: with
        few keys and many windows a call (a job catching up) writes; with many keys it keeps."""
        memory.calls_unwritten += 1
        if (
            memory.calls_unwritten >= self.settings.state_write_every
            or len(memory.dirty) <= len(learned)
            or len(memory.dirty) > self.settings.state_cache_keys
        ):
            self._write_back(memory)
        else:
            self.unwritten.add_all(learned)

    def _learn(self, batch, memory: ShardMemory, clock, ctx):
        window_end_ms, dirty = batch[1], memory.dirty
        if self.delay_ms:
            # Label windows before this one closed with it: their keys learn before this window's
            # rows, so keys and the shard's prior see the same order however many windows a call closes.
            yield from self._close_windows(memory, window_end_ms - 1, clock, ctx)
            # This window's rows wait for the label of window + delay: that window's closing wakes the
            # shard even if no batch of it comes (Flink keeps one timer per time and shard).
            ctx.timer_service().register_event_time_timer(window_end_ms + self.delay_ms - 1)
        rows = batch_rows(batch[2], batch[3], batch[4:])
        if memory.prior.learns:
            # The prior learns every row of the shard: in key order within a window, so that it is the
            # same model whatever order the rows arrived in (several upstream subtasks, partitions).
            rows = sorted(rows, key=lambda row: row[0])
        delay_ms, idle, feature_names = self.delay_ms, memory.idle, self.feature_names
        for key, label, *features in rows:
            state = dirty.get(key) or self._changing(dirty, key)
            x = dict(zip(feature_names, features))
            # The row's outputs are yielded here, not by a generator of its own: one generator less per
            # row, of the few this wrapper's 4 us a row go to (about 0.2 us).
            step = self._process(state, x, label, window_end_ms)
            if step is not None:
                yield from self._after_learning(key, state, step, x, label, memory, clock, ctx)
                p = step.prediction
                yield key, p.window_end_ms, p.prediction, p.model_version, p.predicted, p.probabilities
            if delay_ms and window_end_ms in state.pending:
                memory.pending.add(window_end_ms + delay_ms, key)
            if idle is not None:
                idle.touch(key, window_end_ms)

    def _close_windows(self, memory: ShardMemory, closed_through_ms: int, clock, ctx):
        """The label windows ending by `closed_through_ms` closed: the rows of keys without a row in them
        learn the empty window's label, or are dropped and counted (`pending_rows_dropped`). Returns
        whether any key was waiting on them."""
        closed = memory.pending.pop_closed(closed_through_ms)
        for label_end_ms, key in closed:
            state = memory.dirty.get(key)
            if state is None:  # read, and marked changed, only if it still waits
                state = self._state(key)
                if not self.learner.waits_for(state, label_end_ms):
                    continue
                memory.dirty[key] = state
            steps, dropped = self.learner.close_windows(state, label_end_ms)
            if dropped:
                self.counts["pending_rows_dropped"] += dropped
            for step in steps:
                yield from self._after_learning(key, state, step, None, None, memory, clock, ctx)
        return bool(closed)

    def _changing(self, dirty: dict, key: str) -> KeyState:
        """The key's state, read and put among the shard's changed ones, about to change."""
        state = dirty[key] = self._state(key)
        return state

    def _shard(self, shard: int, clock, ctx) -> ShardMemory:
        """The shard's memory; for a shard new to this process, read from Flink state and brought up to
        date by learning again, silently, the batches it learned after its states were written (a
        restored job): their outputs went out before the checkpoint."""
        memory = self.shards.get(shard)
        if memory is not None:
            self.learner.prior = memory.prior
        else:
            due = DueKeys(self.due_keys.value())
            for key, due_ms in sorted(self.timed_keys.items(), key=lambda item: item[1]):
                due.add(key, due_ms)  # a savepoint of a release before the due-key index
            self.timed_keys.clear()
            memory = self.shards[shard] = ShardMemory(
                due, self.learner.shard_prior(self.prior_models.value()), self._pending_keys(), self._idle_keys()
            )
            self.learner.prior = memory.prior
            learned = list(self.unwritten.get())  # in the order they were learned
            for batch in learned:
                if batch[1] is TIMED:
                    self._republish(batch[2], memory, clock)
                    continue
                if batch[1] == CLOSED:
                    for _ in self._close_windows(memory, batch[2], clock, ctx):
                        pass
                    continue
                if batch[1] in (EXPIRED, DELETED):  # their tombstones went out before the checkpoint
                    self._forget(memory, batch[2])
                    continue
                for _ in self._learn(batch, memory, clock, ctx):
                    pass
            if learned:
                self._write_back(memory)
            self._set_publish_timer(memory, ctx)
        return memory

    def _pending_keys(self) -> PendingKeys:
        """The shard's index of keys with rows waiting for a label; for state of a release before the
        index, built once from the states themselves."""
        stored = self.pending_keys.value()
        if stored is not None or not self.delay_ms:
            return PendingKeys(stored)
        pending = PendingKeys()
        for key, state in self.states.items():
            for window_end_ms in getattr(state, "pending", {}):
                pending.add(window_end_ms + self.delay_ms, key)
        return pending

    def _idle_keys(self) -> IdleKeys | None:
        """The shard's index of keys by last window; for state of a release before it, or of a job run
        without a TTL, built once from the states themselves."""
        if not self.ttl_ms:
            # Once per shard: a later run with a TTL rebuilds the index from the states this run changes.
            self.idle_keys.clear()
            return None
        stored = self.idle_keys.value()
        if stored is not None:
            return IdleKeys(stored)
        return IdleKeys.from_states((key, state.last_window_end_ms) for key, state in self.states.items())

    def _write_back(self, memory: ShardMemory) -> None:
        """Write the shard's changed states and due keys to Flink state, in one call each, and forget
        the batches."""
        dirty = memory.dirty
        if dirty:
            self.states.put_all(dirty)
            self.cache.update(dirty)
            dirty.clear()
        if memory.due:
            self.due_keys.update(memory.due.as_dict())
        else:
            self.due_keys.clear()
        if memory.prior.learns and memory.prior.global_model is not None:
            self.prior_models.update(memory.prior.global_model)
        if self.delay_ms:  # written even when empty: no index at all is a state from before it
            self.pending_keys.update(memory.pending.as_dict())
        if self.ttl_ms:
            self.idle_keys.update(memory.idle.as_dict())
        self.unwritten.clear()
        memory.calls_unwritten = 0

    def _process(self, state: KeyState, x: dict, label, window_end_ms: int) -> Step | None:
        """Predict on the row and learn it (`Learner.process`), counting what it dropped; None for a row
        of a window this key has learned already (counted too)."""
        dropped = state.pending_dropped
        step = self.learner.process(state, x, label, window_end_ms)
        if state.pending_dropped != dropped:  # more than features.max_pending_windows rows waiting
            self.counts["pending_rows_dropped"] += state.pending_dropped - dropped
        if step.prediction is None:  # a window this key has learned already
            self.counts["replayed_rows"] += 1
            return None
        return step

    def _after_learning(self, key: str, state: KeyState, step: Step, x, label, memory: ShardMemory, clock, ctx):
        """A row's side outputs, and its key's snapshot now or a place among the keys waiting for one."""
        if step.quarantined is not None or step.drifted:  # rare: no generator for the rows without
            yield from self._side_outputs(key, state, step, x, label, clock)
        if step.rollback_due:
            self.counts["rollbacks"] += 1
            yield SNAPSHOTS, (key, self.learner.rollback(key, state, *clock.now()))
        elif self.learner.snapshot_due(state):
            yield from self._publish(key, state, clock)
        if not self._unpublished(state):
            memory.due.discard(key)
        elif self.snapshot_wait_ms and key not in memory.due:
            memory.due.add(key, clock.now()[1] + self.snapshot_wait_ms)
            self._set_publish_timer(memory, ctx)

    def _set_publish_timer(self, memory: ShardMemory, ctx) -> None:
        if memory.due and memory.timer_ms is None:
            memory.timer_ms = timer_time(memory.due.next_due())
            ctx.timer_service().register_processing_time_timer(memory.timer_ms)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        if ctx.time_domain() == TimeDomain.EVENT_TIME:
            yield from as_columns(self._learn_waiting(ctx))
        else:
            yield from as_columns(self._publish_due(timestamp, ctx))
        self._count()

    def _count(self) -> None:
        """Hand the call's counts to Flink's counters: once per call, as each `inc` is a call into the JVM."""
        for name, count in self.counts.items():
            if count:
                self.counters[name].inc(count)
        self.counts.clear()

    def _publish_due(self, timestamp: int, ctx):
        """Publish the shard's keys whose `snapshot_wait_ms` is up, and set the timer for the next."""
        clock = _Clock(ctx)
        shard = _shard_of(ctx)
        memory = self._shard(shard, clock, ctx)
        if memory.timer_ms is not None and memory.timer_ms <= timestamp:
            memory.timer_ms = None  # else a timer restored from a checkpoint, beside the one set since
        published = []
        for key in memory.due.pop_due(max(timestamp, clock.now()[1])):
            state = memory.dirty.get(key) or self._changing(memory.dirty, key)
            if self._unpublished(state):
                yield from self._publish(key, state, clock)
                published.append(key)
        if published:
            self._end_call(memory, [(shard, TIMED, tuple(published))])
        self._set_publish_timer(memory, ctx)

    def _republish(self, keys, memory: ShardMemory, clock) -> None:
        """Publish `keys` again, silently, as a timer did before the restore: their states must say so."""
        for key in keys:
            state = memory.dirty.get(key) or self._changing(memory.dirty, key)
            if self._unpublished(state):
                self.learner.publish(key, state, *clock.now())
            memory.due.discard(key)

    @staticmethod
    def _unpublished(state: KeyState) -> bool:
        return state.model_version > max(state.published_version, state.held_version)

    def _side_outputs(self, key, state: KeyState, step: Step, x, label, clock):
        if step.quarantined is not None:
            self.counts["quarantined_rows"] += 1
            yield QUARANTINED, quarantine_record(key, state.last_window_end_ms, x, label, step.quarantined)
        if step.drifted:
            self.counts["drifts_detected"] += 1
            drift = state.drift
            yield (
                DRIFTS,
                Row(key, drift.last_window_end_ms, state.model_version, drift.last_action, drift.count, clock.now()[1]),
            )

    def _publish(self, key, state: KeyState, clock):
        envelope = self.learner.publish(key, state, *clock.now())
        if envelope is None:
            self.counts["snapshots_held_back"] += 1
            return
        self.counts["snapshots_published"] += 1
        yield SNAPSHOTS, (key, envelope)


def as_columns(outputs):
    """A call's outputs with its predictions (tuples of PREDICTION_TYPE's fields) and snapshots gathered
    into pickled records of columns (`PICKLED_COLUMNS`), up to `PREDICTIONS_PER_RECORD` and
    `SNAPSHOTS_PER_RECORD` rows each; the other side outputs as they come.

    >>> snapshots, predictions = as_columns([
    ...     ("k1", 10, 0.5, 1, "true", {}), (SNAPSHOTS, ("k1", b"e")), ("k2", 10, 0.2, 3, "false", None)])
    >>> snapshots[0] is SNAPSHOTS, pickle.loads(snapshots[1])
    (True, (('k1',), (b'e',)))
    >>> keys, _, prediction, _, _, probabilities = pickle.loads(predictions)
    >>> keys, prediction, probabilities
    (('k1', 'k2'), (0.5, 0.2), ({}, None))
    """
    predictions, snapshots = [], []
    for output in outputs:
        if len(output) != 2:
            predictions.append(output)
            if len(predictions) == PREDICTIONS_PER_RECORD:
                yield pickled_columns(predictions)
                predictions = []
        elif output[0] is SNAPSHOTS:
            snapshots.append(output[1])
            if len(snapshots) == SNAPSHOTS_PER_RECORD:
                yield SNAPSHOTS, pickled_columns(snapshots)
                snapshots = []
        else:
            yield output
    if snapshots:
        yield SNAPSHOTS, pickled_columns(snapshots)
    if predictions:
        yield pickled_columns(predictions)


def pickled_columns(rows: list) -> bytes:
    """`rows` (tuples of one length) as a `PICKLED_COLUMNS` record."""
    return pickle.dumps(tuple(zip(*rows)), protocol=COLUMNS_PROTOCOL)


# A call learning a whole window of many keys sends its first models out before its last are learned:
# a snapshot is servable sooner (freshness), a prediction need not be.
SNAPSHOTS_PER_RECORD = 64
PREDICTIONS_PER_RECORD = 1024


def _shard_of(ctx) -> int:
    """The shard a timer fired for: keyed in the JVM (jobs/learner_job.py), the key is a Row(shard)."""
    key = ctx.get_current_key()
    return key if isinstance(key, int) else key[0]


def timer_time(due_ms: int) -> int:
    """A timer's time: `due_ms` rounded up to a whole second, so that a shard's keys share timers
    (each firing reads the shard's waiting keys) and a shard fires at most once a second.

    >>> timer_time(12_001), timer_time(12_000)
    (13000, 12000)
    """
    return -(-due_ms // TIMER_GRANULARITY_MS) * TIMER_GRANULARITY_MS


TIMER_GRANULARITY_MS = 1000


class _Clock:
    """The watermark and processing time, read from Flink at most once per batch (each read is a call
    into the JVM)."""

    def __init__(self, ctx):
        self._ctx = ctx
        self._now = None

    def now(self) -> tuple:
        if self._now is None:
            timers = self._ctx.timer_service()
            self._now = (timers.current_watermark(), timers.current_processing_time())
        return self._now
