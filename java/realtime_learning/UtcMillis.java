package realtime_learning;

import java.time.Instant;
import java.time.LocalDateTime;
import java.time.ZoneOffset;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code UTC_MILLIS(ts)}: a {@code TIMESTAMP(3)} read as a UTC wall clock (what {@code UTC_TIMESTAMP_OF}
 * makes, and the window ends of windows on it), or a {@code TIMESTAMP_LTZ(3)} instant, as epoch
 * milliseconds.
 *
 * <p>Flink's own route, {@code UNIX_TIMESTAMP(CAST(ts AS STRING))}, goes through the session time zone:
 * under daylight saving it maps the repeated autumn hour onto the hour before it and shifts the spring
 * gap. This never reads a zone.
 */
public class UtcMillis extends ScalarFunction {

    public Long eval(@DataTypeHint("TIMESTAMP(3)") LocalDateTime utc) {
        return utc == null ? null : utc.toInstant(ZoneOffset.UTC).toEpochMilli();
    }

    public Long eval(@DataTypeHint("TIMESTAMP_LTZ(3)") Instant instant) {
        return instant == null ? null : instant.toEpochMilli();
    }
}
