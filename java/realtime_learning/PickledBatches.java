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
 * The learner's batches, gathered per shard and pickled: (shard, batch) rows in, one (shard, pickled
 * tuple of batches) row out per shard when {@link #flush} is called, each batch a tuple of its fields,
 * the arrays among them tuples too (udfs/feature_batches.py), so that the learner takes all of a
 * shard's batches with one {@code pickle.loads} in one call.
 *
 * <p>{@link PickledBatchesOperator} flushes before each watermark, each checkpoint barrier and the end
 * of the input: the learner learns a batch only when the watermark that closes its window has passed
 * (an event-time timer), so holding it until that watermark delays nothing, while a job catching up
 * sends a shard's batches of many windows in one record instead of one record each. Every record into
 * Python costs a call through PyFlink and a write to its keyed state; with few keys a batch holds a
 * few rows, and those costs were the learner's largest after River's. A deletion request (a batch
 * whose window end is null) goes out at once, after the batches of its shard that came before it.
 *
 * <p>The pickle is written with the Pickle writer Flink ships for its Python bridge (flink-python's
 * shaded Pyrolite): Java arrays of objects become tuples, numbers, strings and booleans their Python
 * kind. PyFlink's own conversion of a row of arrays takes a JNI call and a Python call per element, on
 * the learner's thread, the job's busiest; this runs on the thread of the task before it.
 */
public class PickledBatches {

    /** The batch's field that is null in a deletion request (udfs/feature_batches.py select_deletions). */
    private static final int WINDOW_END_MS = 1;

    // Per shard, in the order the shards' batches came: the batches since the last flush, as fields.
    private final Map<Object, List<Object[]>> waiting = new LinkedHashMap<>();
    private final Pickler pickler = new Pickler(false);

    /** Keeps the batch of a (shard, batch) row for its shard's next record; sends a deletion request at once. */
    public void add(Row shardAndBatch, Collector<Row> out) throws IOException {
        Object shard = shardAndBatch.getField(0);
        Row batch = (Row) shardAndBatch.getField(1);
        Object[] fields = new Object[batch.getArity()];
        for (int field = 0; field < fields.length; field++) {
            fields[field] = batch.getField(field);
        }
        List<Object[]> batches = waiting.computeIfAbsent(shard, key -> new ArrayList<>());
        batches.add(fields);
        if (fields[WINDOW_END_MS] == null) {
            waiting.remove(shard);
            out.collect(record(shard, batches));
        }
    }

    /** Sends one record per shard with batches waiting, and forgets them. */
    public void flush(Collector<Row> out) throws IOException {
        for (Map.Entry<Object, List<Object[]>> shard : waiting.entrySet()) {
            out.collect(record(shard.getKey(), shard.getValue()));
        }
        waiting.clear();
    }

    private Row record(Object shard, List<Object[]> batches) throws IOException {
        return Row.of(shard, pickler.dumps(batches.toArray()));
    }
}
