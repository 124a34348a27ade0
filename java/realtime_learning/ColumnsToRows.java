package realtime_learning;

import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * The rows of a record of columns: a record whose fields are arrays of one length becomes that many
 * rows, row i made of element i of each array, typed {@code rowType}.
 *
 * <p>The learner (udfs/learner_function.py) hands its predictions and snapshots over as one such record
 * per call into Python rather than one record per row: each record out of Python costs a step through
 * several Python generators and a call across the JNI boundary. Here, in the JVM, a row costs an
 * allocation. Flink SQL's {@code UNNEST} would copy the whole record into every row it makes.
 */
public class ColumnsToRows implements FlatMapFunction<Row, Row>, ResultTypeQueryable<Row> {

    private final TypeInformation<Row> rowType;

    public ColumnsToRows(TypeInformation<Row> rowType) {
        this.rowType = rowType;
    }

    @Override
    public void flatMap(Row columns, Collector<Row> out) {
        int arity = columns.getArity();
        Object[][] arrays = new Object[arity][];
        for (int field = 0; field < arity; field++) {
            arrays[field] = (Object[]) columns.getField(field);
        }
        int rows = arrays[0].length;
        for (int field = 1; field < arity; field++) {
            if (arrays[field].length != rows) {
                throw new IllegalArgumentException("column " + field + " has " + arrays[field].length
                        + " values, column 0 has " + rows);
            }
        }
        for (int i = 0; i < rows; i++) {
            Row row = new Row(arity);
            for (int field = 0; field < arity; field++) {
                row.setField(field, arrays[field][i]);
            }
            out.collect(row);
        }
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return rowType;
    }
}
