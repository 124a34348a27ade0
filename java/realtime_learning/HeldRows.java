package realtime_learning;

import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import java.io.IOException;
import java.io.Serializable;

/**
 * Rows held by a {@link HeldRowsOperator} until the next watermark, checkpoint barrier or end of input,
 * and what goes out for them then: pure logic, apart from the operator that calls it.
 *
 * <p>Holding rows until the next watermark delays nothing downstream that waits for event time: a
 * window sends its rows just before the watermark that closed it. Holding nothing across a
 * checkpoint keeps the operator stateless. It is serialized into the job graph, so what it holds
 * starts empty in each task.
 */
public interface HeldRows extends Serializable {

    /** Takes a row; may send rows at once (a request that must not wait). */
    void add(Row row, Collector<Row> out) throws IOException;

    /** Sends what it holds for the rows since the last flush, and forgets them. */
    void flush(Collector<Row> out) throws IOException;
}
