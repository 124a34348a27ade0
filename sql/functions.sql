-- SQL functions of the job, defined before the DDL that uses them (list this file first).
-- JSON_FIELDS(payload, 'a', 'b', ...): the named top-level fields of a JSON event as an array of texts,
-- NULL elements for missing ones and NULL for a payload that is not one JSON object. It reads the event
-- once, where each JSON_VALUE parses all of it again (java/realtime_learning/JsonFields.java).
CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS JSON_FIELDS AS 'realtime_learning.JsonFields' LANGUAGE JAVA;
-- JSON_PROBLEM(payload, 'a', 'b', ...): why JSON_FIELDS with the same fields is NULL (a tombstone, an empty
-- event, not UTF-8, not an object, a duplicated field, too deep, malformed), as a dead-letter reason
-- (java/realtime_learning/JsonProblem.java).
CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS JSON_PROBLEM AS 'realtime_learning.JsonProblem' LANGUAGE JAVA;
-- EVENT_TIME_MILLIS(ts_text, max_ahead_seconds): the event time sql/events.sql windows on, 0 (which never
-- moves the watermark) for a ts that is missing, negative or too far ahead of the clock
-- (java/realtime_learning/EventTimeMillis.java).
CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS EVENT_TIME_MILLIS AS 'realtime_learning.EventTimeMillis' LANGUAGE JAVA;
-- UTC_TIMESTAMP_OF(epoch_ms): epoch milliseconds as a TIMESTAMP(3) holding the UTC wall clock, the job's
-- rowtime (sql/events.sql). Flink windows a TIMESTAMP_LTZ rowtime on the session zone's wall clock, so under
-- daylight saving the repeated autumn hour would share the windows of the hour before it; on this one
-- windows, watermarks and window ends are UTC epoch milliseconds whatever the zones
-- (java/realtime_learning/UtcTimestamp.java).
CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS UTC_TIMESTAMP_OF AS 'realtime_learning.UtcTimestamp' LANGUAGE JAVA;
-- UTC_MILLIS(ts): a TIMESTAMP(3) read as UTC (a window end), or a TIMESTAMP_LTZ, as epoch milliseconds,
-- never through the session time zone as UNIX_TIMESTAMP(CAST(ts AS STRING)) goes
-- (java/realtime_learning/UtcMillis.java).
CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS UTC_MILLIS AS 'realtime_learning.UtcMillis' LANGUAGE JAVA;
-- DEAD_LETTER_REASON(reason): the reason, counted in the Flink metric dead_letters_<class>, the class being
-- the reason's text before its first colon (java/realtime_learning/DeadLetterReason.java).
CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS DEAD_LETTER_REASON AS 'realtime_learning.DeadLetterReason' LANGUAGE JAVA;
