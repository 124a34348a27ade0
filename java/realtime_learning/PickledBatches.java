package realtime_learning;

import org.apache.flink.api.python.shaded.net.razorvine.pickle.Pickler;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The learner's batches, made from its feature rows per shard and pickled: rows (shard, window_end_ms,
 * key, label, feature_1, ..., feature_n) in (udfs/feature_batches.py select_rows), one (shard, pickled
 * tuple of batches) row out per shard when {@link #flush} is called, one batch per window, (shard,
 * window_end_ms, keys, labels, feature_1, ..., feature_n), each column a tuple, so that the learner
 * takes all of a shard's windows with one {@code pickle.loads} in one call.
 *
 * <p>{@link HeldRowsOperator} flushes it before each watermark, each checkpoint barrier and the end
 * of the input: the learner learns a window's rows only when the watermark that closes it has passed
 * (an event-time timer), and the feature window sends them just before that watermark, so holding them
 * until it delays nothing, while a job catching up sends a shard's rows of many windows in one record.
 * Every record into Python costs a call through PyFlink and a write to its keyed state; with few keys
 * a window holds a few rows of a shard, and those costs were the learner's largest after River's. The
 * rows are grouped here rather than by a SQL window aggregation (ARRAY_AGG per column), which cost a
 * keyed state access per row and a shuffle. A deletion request (a row whose window end is null) goes
 * out at once, as a batch of its own after the batches of its shard that came before it.
 *
 * <p>The pickle is written with the Pickle writer Flink ships for its Python bridge (flink-python's
 * shaded Pyrolite): Java arrays of objects become tuples, numbers, strings and booleans their Python
 * kind. PyFlink's own conversion of a row of arrays takes a JNI call and a Python call per element, on
 * the learner's thread, the job's busiest; this runs on the thread of the task before it.
 */
public class PickledBatches implements HeldRows {

    private static final int SHARD = 0;
    /** The row's field that is null in a deletion request (udfs/feature_batches.py select_deletions). */
    private static final int WINDOW_END_MS = 1;
    /** The first of the columns a batch holds as tuples: key, label, the features. */
    private static final int KEY = 2;

    // Per shard, in the order the shards' rows came: per window end, in the order they came, the
    // window's columns (key, label, features) since the last flush.
    private final Map<Object, Map<Object, List<Object>[]>> waiting = new LinkedHashMap<>();
    // Not serializable, and made in the task: the operator is serialized into the job graph.
    private transient Pickler pickler;

    /** Keeps a feature row for its shard's next record; sends a deletion request at once. */
    @Override
    public void add(Row row, Collector<Row> out) throws IOException {
        Object shard = row.getField(SHARD);
        Object windowEndMs = row.getField(WINDOW_END_MS);
        Map<Object, List<Object>[]> windows = waiting.computeIfAbsent(shard, key -> new LinkedHashMap<>());
        List<Object>[] columns = windows.computeIfAbsent(windowEndMs, key -> newColumns(row.getArity() - KEY));
        for (int column = 0; column < columns.length; column++) {
            columns[column].add(row.getField(KEY + column));
        }
        if (windowEndMs == null) {
            waiting.remove(shard);
            out.collect(record(shard, windows));
        }
    }

    /** Sends one record per shard with rows waiting, and forgets them. */
    @Override
    public void flush(Collector<Row> out) throws IOException {
        for (Map.Entry<Object, Map<Object, List<Object>[]>> shard : waiting.entrySet()) {
            out.collect(record(shard.getKey(), shard.getValue()));
        }
        waiting.clear();
    }

    @SuppressWarnings("unchecked")
    private static List<Object>[] newColumns(int count) {
        List<Object>[] columns = new List[count];
        for (int column = 0; column < count; column++) {
            columns[column] = new ArrayList<>();
        }
        return columns;
    }

    private Row record(Object shard, Map<Object, List<Object>[]> windows) throws IOException {
        if (pickler == null) {
            pickler = new Pickler(false);
        }
        Object[] batches = new Object[windows.size()];
        int batch = 0;
        for (Map.Entry<Object, List<Object>[]> window : windows.entrySet()) {
            List<Object>[] columns = window.getValue();
            Object[] fields = new Object[KEY + columns.length];
            fields[SHARD] = shard;
            fields[WINDOW_END_MS] = window.getKey();
            for (int column = 0; column < columns.length; column++) {
                fields[KEY + column] = columns[column].toArray();
            }
            batches[batch++] = fields;
        }
        return Row.of(shard, pickler.dumps(batches));
    }
}
