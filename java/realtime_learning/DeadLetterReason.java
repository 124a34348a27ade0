package realtime_learning;

import java.util.HashMap;
import java.util.Locale;
import java.util.Map;

import org.apache.flink.metrics.Counter;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;

/**
 * {@code DEAD_LETTER_REASON(reason)}: the reason itself, counting it in the operator's Flink metric
 * {@code dead_letters_<class>}, exported by every metric reporter (Prometheus:
 * {@code flink_taskmanager_job_task_operator_dead_letters_<class>}) and the REST API.
 *
 * <p>A reason's class is its text before the first colon, lower-cased, each run of other characters
 * than letters and digits one underscore: {@code 'late: 12 s behind the watermark'} counts in
 * {@code dead_letters_late}, {@code 'ts is negative'} in {@code dead_letters_ts_is_negative}. So a
 * reason that carries a measured detail puts it after a colon, and its class stays one counter.
 *
 * <p>Non-deterministic, so that the planner neither folds nor duplicates the call.
 */
public class DeadLetterReason extends ScalarFunction {

    private transient MetricGroup metrics;
    private transient Map<String, Counter> counters;

    @Override
    public void open(FunctionContext context) {
        metrics = context.getMetricGroup();
        counters = new HashMap<>();
    }

    public String eval(String reason) {
        if (reason != null) {
            counters.computeIfAbsent(metricName(reason), metrics::counter).inc();
        }
        return reason;
    }

    /** The counter a reason counts in. */
    public static String metricName(String reason) {
        int colon = reason.indexOf(':');
        String reasonClass = (colon < 0 ? reason : reason.substring(0, colon)).toLowerCase(Locale.ROOT)
                .replaceAll("[^a-z0-9]+", "_").replaceAll("^_+|_+$", "");
        return "dead_letters_" + (reasonClass.isEmpty() ? "unnamed" : reasonClass);
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }
}
