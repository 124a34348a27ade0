-- SQL functions of the job, defined before the DDL that uses them (list this file first).
-- JSON_FIELDS(payload, 'a', 'b', ...): the named top-level fields of a JSON event as an array of texts,
-- NULL elements for missing ones and NULL for a payload that is not one JSON object. It reads the event
-- once, where each JSON_VALUE parses all of it again (java/realtime_learning/JsonFields.java).
CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS JSON_FIELDS AS 'realtime_learning.JsonFields' LANGUAGE JAVA;
