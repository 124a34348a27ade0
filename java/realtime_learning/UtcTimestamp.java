package realtime_learning;

import java.time.LocalDateTime;
import java.time.ZoneOffset;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code UTC_TIMESTAMP_OF(epoch_ms)}: epoch milliseconds as a {@code TIMESTAMP(3)} holding the UTC
 * wall clock, whatever {@code table.local-time-zone} or the JVM's zone is.
 *
 * <p>The job's rowtime is this, not a {@code TIMESTAMP_LTZ}: Flink windows a {@code TIMESTAMP_LTZ}
 * rowtime on the session zone's wall clock, so in a zone with daylight saving the repeated autumn hour
 * falls into the same windows as the hour before it (and their ends collide), while on a
 * {@code TIMESTAMP(3)} rowtime windows, watermarks and window ends are plain UTC epoch milliseconds.
 * {@code UTC_MILLIS} reads them back.
 */
public class UtcTimestamp extends ScalarFunction {

    public @DataTypeHint("TIMESTAMP(3)") LocalDateTime eval(Long epochMillis) {
        if (epochMillis == null) {
            return null;
        }
        long seconds = Math.floorDiv(epochMillis, 1000L);
        int nanos = (int) Math.floorMod(epochMillis, 1000L) * 1_000_000;
        return LocalDateTime.ofEpochSecond(seconds, nanos, ZoneOffset.UTC);
    }
}
