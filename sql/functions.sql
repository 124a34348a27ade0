-- SQL functions of the job, defined before the DDL that uses them (list this file first).
-- JSON_FIELDS(payload, 'a', 'b', ...): the named top-level fields of a JSON event as an array of texts,
-- NULL elements for missing ones and NULL for a payload that is not one JSON object. It reads the event
-- once, where each JSON_VALUE parses all of it again (java/realtime_learning/JsonFields.java).
CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS JSON_FIELDS AS 'realtime_learning.JsonFields' LANGUAGE JAVA;
-- EVENT_TIME_MILLIS(ts_text, max_ahead_seconds): the event time sql/events.sql windows on, 0 (which never
-- moves the watermark) for a ts that is missing, negative or too far ahead of the clock
-- (java/realtime_learning/EventTimeMillis.java).
CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS EVENT_TIME_MILLIS AS 'realtime_learning.EventTimeMillis' LANGUAGE JAVA;
