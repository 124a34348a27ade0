package realtime_learning;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;

import java.io.IOException;

/**
 * {@code JSON_FIELDS(payload, 'a', 'b', ...)}: the named top-level fields of a JSON object, read in one
 * pass over its bytes, as an array of their texts in the order named.
 *
 * <p>Flink's {@code JSON_VALUE} parses the whole event into a tree for every field it reads, which
 * made parsing most of the job's SQL cost. This reads each event once, with a streaming parser, and
 * builds text only for the fields asked for.
 *
 * <p>A field's element is its value as written for a string, number or boolean ({@code 1.50} stays
 * "1.50"; cast it with {@code TRY_CAST}), and NULL when the field is missing, null, an object or an
 * array. The whole result is NULL when the payload is not exactly one well-formed JSON object in UTF-8
 * (bad UTF-8 anywhere, trailing text, and nesting or numbers beyond the parser's limits included) or
 * names one of the fields asked for twice (which of two values would be meant is a guess), so
 * {@code fields IS NULL} is the check that the event is readable; {@code JSON_PROBLEM}
 * ({@link JsonProblem}) says why not, for those events only.
 *
 * <p>Declared non-deterministic only so that Flink's planner computes it once per row where a query
 * reads several of its elements: it never merges a projection into one that would repeat a
 * non-deterministic call, and does so for a deterministic one.
 */
public class JsonFields extends ScalarFunction {

    private static final JsonFactory FACTORY = new JsonFactory();

    public @DataTypeHint("ARRAY<STRING>") String[] eval(byte[] payload, String... names) {
        if (payload == null) {
            return null;
        }
        if (!Utf8.valid(payload)) {
            return null;
        }
        String[] values = new String[names.length];
        boolean[] seen = new boolean[names.length];
        try (JsonParser parser = FACTORY.createParser(payload)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return null;
            }
            JsonToken token;
            while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
                int index = indexOf(names, parser.currentName());
                if (index >= 0) {
                    if (seen[index]) {
                        return null;
                    }
                    seen[index] = true;
                }
                JsonToken value = parser.nextToken();
                if (value == JsonToken.START_OBJECT || value == JsonToken.START_ARRAY) {
                    parser.skipChildren();
                    if (index >= 0) {
                        values[index] = null;
                    }
                } else if (index >= 0) {
                    values[index] = value == JsonToken.VALUE_NULL ? null : parser.getText();
                }
            }
            if (token != JsonToken.END_OBJECT || parser.nextToken() != null) {
                return null;
            }
            return values;
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    static int indexOf(String[] names, String name) {
        for (int i = 0; i < names.length; i++) {
            if (names[i].equals(name)) {
                return i;
            }
        }
        return -1;
    }

    @Override
    public boolean isDeterministic() {
        return false;
    }
}
