-- Every event is parsed and checked once; `problem` names what is wrong, NULL when nothing is.
-- Add a field: parse it below, check it in the CASE, and select it in the `events` view.
-- Each JSON_VALUE parses the whole event, which is most of this stage's cost: parse a field once, and
-- keep whole-event checks out of a valid event's path (`ts` comes parsed from events_raw).
CREATE VIEW parsed_events AS
SELECT
  payload,
  source_partition,
  source_offset,
  event_time,
  ts,
  JSON_VALUE(body, '$.entity') AS entity,
  -- Values are read as text and cast with TRY_CAST, so a wrong type gives NULL, never an error.
  TRY_CAST(JSON_VALUE(body, '$.x1') AS DOUBLE) AS x1,
  TRY_CAST(JSON_VALUE(body, '$.x2') AS DOUBLE) AS x2,
  JSON_VALUE(body, '$.label') AS label_text,
  body
FROM (SELECT *, CAST(payload AS STRING) AS body FROM events_raw);

CREATE VIEW checked_events AS
SELECT
  *,
  CASE
    WHEN CHAR_LENGTH(body) > ${events.max_chars} THEN 'oversized: more than ${events.max_chars} characters'
    -- LIKE with a plain substring compiles to a substring search; SIMILAR TO would run a regex.
    WHEN body LIKE '%NaN%' OR body LIKE '%Infinity%' THEN 'NaN or infinite number'
    -- A body that is not a JSON object has no entity, so only then is the whole body checked.
    WHEN entity IS NULL AND NOT (body IS JSON OBJECT) THEN 'malformed JSON'
    WHEN entity IS NULL OR CHAR_LENGTH(TRIM(entity)) = 0 THEN 'missing key: entity'
    WHEN ts IS NULL THEN 'ts missing or not an integer'
    WHEN x1 IS NULL THEN 'x1 missing or not a number'
    WHEN x2 IS NULL THEN 'x2 missing or not a number'
    WHEN label_text NOT IN ('true', 'false') THEN 'label is not a boolean'
  END AS problem
FROM parsed_events;

CREATE VIEW events AS
SELECT entity, x1, x2, label_text = 'true' AS label, ts, event_time FROM checked_events WHERE problem IS NULL;
