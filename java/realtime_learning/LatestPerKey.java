package realtime_learning;

import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Each key's newest row since the last flush ({@link HeldRowsOperator}: the next watermark, checkpoint
 * barrier or end of input), for the compacted latest-features topic, where only a key's newest record
 * counts: readers keep the newest per key, and compaction drops the others.
 *
 * <p>A feature window sends all of its rows before the watermark that closed it, so in a live stream
 * a flush holds one window and each row goes out, none later than before. A job catching up closes
 * many windows per watermark: a key's rows of all but the newest of them are not written at all,
 * and with them their JSON, their Kafka writes and their share of each transaction (README:
 * Performance, What was changed).
 */
public class LatestPerKey implements HeldRows {

    private final int keyField;
    // Key -> its newest row, in the order of each key's newest row.
    private final Map<Object, Row> newest = new LinkedHashMap<>();

    /** Rows keyed by their field {@code keyField}. */
    public LatestPerKey(int keyField) {
        this.keyField = keyField;
    }

    @Override
    public void add(Row row, Collector<Row> out) {
        Object key = row.getField(keyField);
        newest.remove(key);
        newest.put(key, row);
    }

    @Override
    public void flush(Collector<Row> out) {
        for (Row row : newest.values()) {
            out.collect(row);
        }
        newest.clear();
    }
}
