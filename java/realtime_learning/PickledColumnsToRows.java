package realtime_learning;

import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.api.common.typeinfo.BasicTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.api.java.typeutils.RowTypeInfo;
import org.apache.flink.api.python.shaded.net.razorvine.pickle.PickleException;
import org.apache.flink.api.python.shaded.net.razorvine.pickle.Unpickler;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

import java.io.IOException;
import java.util.function.UnaryOperator;

/**
 * The rows of a record of columns, pickled: a Python tuple of tuples of one length becomes that many
 * rows, row i made of element i of each tuple, typed {@code rowType}.
 *
 * <p>The learner (udfs/learner_function.py, {@code as_columns}) hands its predictions and snapshots
 * over as one such record per call into Python rather than one record per row, and pickles it itself,
 * in one call into C: PyFlink's own conversion of a record of arrays into Java objects took a Python
 * call and a JNI object per element, on the learner's thread. Here, on the thread of the task after
 * it, the record is read with the Pickle reader Flink ships for its Python bridge (flink-python's
 * shaded Pyrolite, which makes tuples, numbers, strings, bytes and dicts only, never runs code), and a
 * Python int is made the field's Java type: the reader gives an Integer or a Long by the value's size.
 */
public class PickledColumnsToRows implements FlatMapFunction<byte[], Row>, ResultTypeQueryable<Row> {

    private final RowTypeInfo rowType;
    private transient UnaryOperator<Object>[] fieldValues;

    public PickledColumnsToRows(TypeInformation<Row> rowType) {
        this.rowType = (RowTypeInfo) rowType;
    }

    @Override
    public void flatMap(byte[] pickled, Collector<Row> out) throws IOException {
        Object[] columns;
        try {
            columns = (Object[]) new Unpickler().loads(pickled);
        } catch (PickleException | ClassCastException e) {
            throw new IOException("not a pickled tuple of columns (" + pickled.length + " bytes)", e);
        }
        int arity = rowType.getArity();
        if (columns.length != arity) {
            throw new IllegalArgumentException(columns.length + " columns, the row type has " + arity);
        }
        if (fieldValues == null) {
            fieldValues = fieldValues(rowType);
        }
        Object[][] arrays = new Object[arity][];
        for (int field = 0; field < arity; field++) {
            if (!(columns[field] instanceof Object[])) {
                Object column = columns[field];
                throw new IllegalArgumentException("column " + field + " is not a tuple (a "
                        + (column == null ? "None" : column.getClass().getSimpleName()) + ")");
            }
            arrays[field] = (Object[]) columns[field];
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
                row.setField(field, fieldValues[field].apply(arrays[field][i]));
            }
            out.collect(row);
        }
    }

    /** Per field, what makes a value read from the pickle the field's Java type. */
    @SuppressWarnings("unchecked")
    private static UnaryOperator<Object>[] fieldValues(RowTypeInfo rowType) {
        UnaryOperator<Object>[] values = new UnaryOperator[rowType.getArity()];
        for (int field = 0; field < values.length; field++) {
            TypeInformation<?> type = rowType.getTypeAt(field);
            if (type.equals(BasicTypeInfo.LONG_TYPE_INFO)) {
                values[field] = value -> value == null ? null : ((Number) value).longValue();
            } else if (type.equals(BasicTypeInfo.INT_TYPE_INFO)) {
                values[field] = value -> value == null ? null : ((Number) value).intValue();
            } else if (type.equals(BasicTypeInfo.DOUBLE_TYPE_INFO)) {
                values[field] = value -> value == null ? null : ((Number) value).doubleValue();
            } else {
                values[field] = UnaryOperator.identity();
            }
        }
        return values;
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return rowType;
    }
}
