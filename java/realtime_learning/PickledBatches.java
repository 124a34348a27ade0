package realtime_learning;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.api.python.shaded.net.razorvine.pickle.Pickler;
import org.apache.flink.types.Row;

import java.io.IOException;

/**
 * A (shard, batch) row with the batch pickled: its fields, the arrays among them, as a Python tuple of
 * tuples (udfs/feature_batches.py), typed {@code producedType}, whose batch field is PyFlink's
 * pickled-bytes type, so that the learner takes the batch with one {@code pickle.loads}.
 *
 * <p>PyFlink converts a row of arrays into Python element by element, a JNI call and a Python call
 * each, on the learner's thread, the job's busiest; the pickle is written here, on the thread of the
 * task before it, with the Pickle writer Flink ships for its Python bridge (flink-python's shaded
 * Pyrolite): Java arrays of objects become tuples, numbers, strings and booleans their Python kind.
 */
public class PickledBatches implements MapFunction<Row, Row>, ResultTypeQueryable<Row> {

    private final TypeInformation<Row> producedType;
    private transient Pickler pickler;

    public PickledBatches(TypeInformation<Row> producedType) {
        this.producedType = producedType;
    }

    @Override
    public Row map(Row shardAndBatch) throws IOException {
        Row batch = (Row) shardAndBatch.getField(1);
        Object[] fields = new Object[batch.getArity()];
        for (int field = 0; field < fields.length; field++) {
            fields[field] = batch.getField(field);
        }
        if (pickler == null) {
            pickler = new Pickler(false);
        }
        return Row.of(shardAndBatch.getField(0), pickler.dumps(fields));
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return producedType;
    }
}
