package realtime_learning;

import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code EVENT_TIME_MILLIS(ts_text, max_ahead_seconds)}: an event's {@code ts} as epoch milliseconds
 * when it is one the job can window, else 0.
 *
 * <p>The source's watermark follows the largest event time it has read, so one event stamped in the
 * year 2100 would close every window up to then, and every valid event after it would arrive late.
 * Here a {@code ts} that is missing, not a whole number, negative, or more than
 * {@code max_ahead_seconds} after this machine's clock when it is read becomes 0, which never moves
 * the watermark; {@code sql/checked_events.sql} sends those events to the dead-letter topic, naming why.
 *
 * <p>Non-deterministic: it reads the clock.
 */
public class EventTimeMillis extends ScalarFunction {

    public long eval(String text, int maxAheadSeconds) {
        if (text == null) {
            return 0L;
        }
        long ts;
        try {
            ts = Long.parseLong(text.trim());
        } catch (NumberFormatException e) {
            return 0L;
        }
        return ts >= 0 && ts <= System.currentTimeMillis() + maxAheadSeconds * 1000L ? ts : 0L;
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }
}
