package realtime_learning;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonProcessingException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.StreamReadConstraints;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.exc.StreamConstraintsException;
import org.apache.flink.table.functions.ScalarFunction;

import java.io.IOException;

/**
 * {@code JSON_PROBLEM(payload, 'a', 'b', ...)}: why {@code JSON_FIELDS(payload, 'a', 'b', ...)}
 * ({@link JsonFields}) is NULL, as a dead-letter reason; NULL when it is not.
 *
 * <p>Reasons: {@code tombstone: no value} (a Kafka record without a value), {@code empty event},
 * {@code not UTF-8}, {@code not a JSON object}, {@code duplicate field: <name>} (a field the job
 * reads, written twice), {@code nesting too deep: more than <n> levels},
 * {@code number too long: more than <n> characters} and {@code malformed JSON: <the parser's message>}.
 * The text before the colon names the reason's counter (java/realtime_learning/DeadLetterReason.java).
 *
 * <p>It parses the event once more, so sql/checked_events.sql calls it only for events
 * {@code JSON_FIELDS} could not read: a valid event never pays for it.
 */
public class JsonProblem extends ScalarFunction {

    private static final JsonFactory FACTORY = new JsonFactory();
    private static final int MAX_DETAIL = 120;

    public String eval(byte[] payload, String... names) {
        if (payload == null) {
            return "tombstone: no value";
        }
        if (payload.length == 0) {
            return "empty event";
        }
        if (!Utf8.valid(payload)) {
            return "not UTF-8";
        }
        boolean[] seen = new boolean[names.length];
        try (JsonParser parser = FACTORY.createParser(payload)) {
            JsonToken first = parser.nextToken();
            if (first == null) {
                return "empty event";
            }
            if (first != JsonToken.START_OBJECT) {
                return "not a JSON object";
            }
            JsonToken token;
            while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
                int index = JsonFields.indexOf(names, parser.currentName());
                if (index >= 0) {
                    if (seen[index]) {
                        return "duplicate field: " + names[index];
                    }
                    seen[index] = true;
                }
                JsonToken value = parser.nextToken();
                if (value == JsonToken.START_OBJECT || value == JsonToken.START_ARRAY) {
                    parser.skipChildren();
                }
            }
            if (token != JsonToken.END_OBJECT) {
                return "malformed JSON: the object does not end";
            }
            if (parser.nextToken() != null) {
                return "malformed JSON: text after the object";
            }
            return null;
        } catch (StreamConstraintsException e) {
            String message = e.getOriginalMessage();
            if (message.contains("nesting depth")) {
                return "nesting too deep: more than " + StreamReadConstraints.DEFAULT_MAX_DEPTH + " levels";
            }
            if (message.contains("Number value length") || message.contains("number length")) {
                return "number too long: more than " + StreamReadConstraints.DEFAULT_MAX_NUM_LEN + " characters";
            }
            return "malformed JSON: " + shorten(message);
        } catch (JsonProcessingException e) {
            return "malformed JSON: " + shorten(e.getOriginalMessage());
        } catch (IOException | RuntimeException e) {
            return "malformed JSON: " + shorten(String.valueOf(e.getMessage()));
        }
    }

    /** The message's first line, at most MAX_DETAIL characters: a reason is a header, not a log. */
    private static String shorten(String message) {
        String line = message.split("\n", 2)[0];
        return line.length() <= MAX_DETAIL ? line : line.substring(0, MAX_DETAIL) + "...";
    }
}
