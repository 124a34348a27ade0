package realtime_learning;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * {@link HeldRows} in a job: rows held until the next watermark, checkpoint barrier or end of input,
 * which each flush them first. Nothing is held across a checkpoint, so the operator has no state; it
 * chains to the operator before it, as a map would (jobs/learner_job.py).
 */
public class HeldRowsOperator extends AbstractStreamOperator<Row> implements OneInputStreamOperator<Row, Row> {

    private final HeldRows held;
    private transient Collector<Row> out;

    public HeldRowsOperator(HeldRows held) {
        this.held = held;
    }

    @Override
    public void open() throws Exception {
        super.open();
        out = new Collector<>() {
            @Override
            public void collect(Row record) {
                output.collect(new StreamRecord<>(record));
            }

            @Override
            public void close() {}
        };
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        held.add(element.getValue(), out);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        held.flush(out);
        super.processWatermark(mark);
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        held.flush(out);
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void finish() throws Exception {
        held.flush(out);
        super.finish();
    }
}
