"""The learner's records across the JNI boundary, pickled: the batches the JVM pickles for the learner, a
shard's rows until the next watermark in one record (java/realtime_learning/PickledBatches.java),
and the records of columns the learner pickles for the JVM (udfs.learner_function.as_columns,
java/realtime_learning/PickledColumnsToRows.java); and the latest-features rows, a key's newest until the
next watermark (java/realtime_learning/LatestPerKey.java). Run in a JVM of the test's own with the job's
compiled functions, as the TaskManager runs them."""

import os
import pickle
import signal

import pytest
from pyflink import java_gateway

from udfs.learner_function import PREDICTION_TYPE, SNAPSHOT_TYPE, pickled_columns


@pytest.fixture(scope="module")
def jvm():
    """PyFlink's gateway JVM, with the Flink lib/ the job runs on (setup copies the functions jar there):
    the one `get_java_type_info()` makes the job's types in. Killed by PID at the end, and forgotten by
    PyFlink, so that a later caller starts another."""
    gateway = java_gateway.get_gateway()
    pid = gateway.jvm.java.lang.ProcessHandle.current().pid()
    try:
        yield gateway
    finally:
        with java_gateway._lock:
            java_gateway._gateway = None
        gateway.shutdown()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def rows_of(jvm, function, record) -> list:
    out = jvm.jvm.java.util.ArrayList()
    function.flatMap(record, jvm.jvm.org.apache.flink.api.common.functions.util.ListCollector(out))
    return list(out)


def sink(jvm):
    """A Java list, and a collector into it."""
    out = jvm.jvm.java.util.ArrayList()
    return out, jvm.jvm.org.apache.flink.api.common.functions.util.ListCollector(out)


def serialized(jvm, row_type, row) -> bytes:
    """`row` in Flink's binary form for `row_type`: its serializer fails on a field of another Java type
    (an Integer in a BIGINT field), as the sink's would."""
    serializer = row_type.get_java_type_info().createSerializer(
        jvm.jvm.org.apache.flink.api.common.serialization.SerializerConfigImpl()
    )
    out = jvm.jvm.org.apache.flink.core.memory.DataOutputSerializer(256)
    serializer.serialize(row, out)
    return bytes(out.getCopyOfBuffer())


def test_predictions_come_out_as_rows_of_the_sinks_java_types(jvm):
    rows = [
        ("k1", 1_700_000_000_000, 0.25, 3, "true", {"true": 0.25, "false": 0.75}),
        # A version past 2**31 (a Long in the pickle, where 3 is an Integer), and no answer yet.
        ("k2", 1_700_000_001_000, None, 2**40, None, None),
    ]
    function = jvm.jvm.realtime_learning.PickledColumnsToRows(PREDICTION_TYPE.get_java_type_info())
    out = rows_of(jvm, function, pickled_columns(rows))
    assert [[row.getField(i) for i in range(5)] for row in out] == [list(r[:5]) for r in rows]
    assert dict(out[0].getField(5)) == {"true": 0.25, "false": 0.75} and out[1].getField(5) is None
    for row in out:
        assert serialized(jvm, PREDICTION_TYPE, row)


def test_snapshots_keep_their_envelopes_bytes(jvm):
    envelope = bytes(range(256)) * 10
    function = jvm.jvm.realtime_learning.PickledColumnsToRows(SNAPSHOT_TYPE.get_java_type_info())
    (row,) = rows_of(jvm, function, pickled_columns([("k1", envelope)]))
    assert row.getField(0) == "k1" and bytes(row.getField(1)) == envelope
    assert serialized(jvm, SNAPSHOT_TYPE, row)


def test_a_record_that_is_not_pickled_columns_is_refused_naming_its_size(jvm):
    function = jvm.jvm.realtime_learning.PickledColumnsToRows(SNAPSHOT_TYPE.get_java_type_info())
    with pytest.raises(Exception, match="not a pickled tuple of columns \\(4 bytes\\)"):
        rows_of(jvm, function, b"oops")
    with pytest.raises(Exception, match="1 columns, the row type has 2"):
        rows_of(jvm, function, pickle.dumps((("k1",),), protocol=4))
    with pytest.raises(Exception, match="column 1 is not a tuple"):
        rows_of(jvm, function, pickle.dumps((("k1",), b"e"), protocol=4))


def test_a_shards_rows_reach_python_together_as_the_batches_the_learner_reads(jvm):
    j = jvm.jvm

    def row_of(shard, window_end_ms, key, label, x, n):
        """A learner row (udfs.feature_batches.select_rows) of the Java types the table conversion gives."""
        values = [
            j.java.lang.Integer(shard),
            None if window_end_ms is None else j.java.lang.Long(window_end_ms),
            key,
            None if label is None else j.java.lang.Boolean(label),
            None if x is None else j.java.lang.Double(x),
            None if n is None else j.java.lang.Long(n),
        ]
        made = j.org.apache.flink.types.Row(len(values))
        for i, value in enumerate(values):
            made.setField(i, value)
        return made

    def records(out) -> list:
        return [(record.getField(0), pickle.loads(bytes(record.getField(1)))) for record in out]

    batches = j.realtime_learning.PickledBatches()
    out, collector = sink(jvm)
    for row in [
        (2, 1_000, "k1", True, 0.5, 3),
        (1, 1_000, "k3", False, 1.0, 1),
        (2, 1_000, "k2", None, -1.5, 2**40),
        # The next window of shard 2 (two windows closed by one watermark, as while a job catches up).
        (2, 2_000, "k1", False, 2.5, 4),
    ]:
        batches.add(row_of(*row), collector)
    assert out.size() == 0  # held until the watermark
    batches.flush(collector)
    assert records(out) == [
        (
            2,
            (
                (2, 1_000, ("k1", "k2"), (True, None), (0.5, -1.5), (3, 2**40)),
                (2, 2_000, ("k1",), (False,), (2.5,), (4,)),
            ),
        ),
        (1, ((1, 1_000, ("k3",), (False,), (1.0,), (1,)),)),
    ]
    out, collector = sink(jvm)
    batches.flush(collector)
    assert out.size() == 0  # nothing is sent twice

    # A deletion request goes out at once, after its shard's batches before it; other shards' wait.
    batches.add(row_of(1, 3_000, "k3", True, 0.0, 5), collector)
    batches.add(row_of(2, 3_000, "k2", True, 0.0, 6), collector)
    batches.add(row_of(2, None, "k2", None, None, None), collector)
    assert records(out) == [
        (2, ((2, 3_000, ("k2",), (True,), (0.0,), (6,)), (2, None, ("k2",), (None,), (None,), (None,)))),
    ]
    out, collector = sink(jvm)
    batches.flush(collector)
    assert records(out) == [(1, ((1, 3_000, ("k3",), (True,), (0.0,), (5,)),))]


def test_the_latest_features_keep_each_keys_newest_row_until_the_flush(jvm):
    j = jvm.jvm

    def row_of(key, window_end_ms, x):
        made = j.org.apache.flink.types.Row(3)
        made.setField(0, j.java.lang.Long(window_end_ms))
        made.setField(1, key)
        made.setField(2, j.java.lang.Double(x))
        return made

    out, collector = sink(jvm)
    latest = j.realtime_learning.LatestPerKey(1)
    # Three windows closed by one watermark (a job catching up): k1 in all three, k2 in the first only.
    for window_end_ms, key, x in [(1_000, "k1", 0.5), (1_000, "k2", 1.5), (2_000, "k1", 2.5), (3_000, "k1", 3.5)]:
        latest.add(row_of(key, window_end_ms, x), collector)
    assert out.size() == 0  # held until the watermark
    latest.flush(collector)
    assert [(row.getField(1), row.getField(0), row.getField(2)) for row in out] == [
        ("k2", 1_000, 1.5),
        ("k1", 3_000, 3.5),
    ]
    out, collector = sink(jvm)
    latest.flush(collector)
    assert out.size() == 0  # nothing is sent twice
    latest.add(row_of("k2", 4_000, 4.5), collector)
    latest.flush(collector)
    assert [(row.getField(1), row.getField(0)) for row in out] == [("k2", 4_000)]
