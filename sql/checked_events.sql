-- Every event is parsed and checked once; `problem` names what is wrong, NULL when nothing is.
-- Add a field: parse it below, check it in the CASE, and select it in the `events` view.
CREATE VIEW parsed_events AS
SELECT
  payload,
  source_partition,
  source_offset,
  event_time,
  JSON_VALUE(body, '$.entity') AS entity,
  -- Values are read as text and cast with TRY_CAST, so a wrong type gives NULL, never an error.
  TRY_CAST(JSON_VALUE(body, '$.x1') AS DOUBLE) AS x1,
  TRY_CAST(JSON_VALUE(body, '$.x2') AS DOUBLE) AS x2,
  JSON_VALUE(body, '$.label') AS label_text,
  TRY_CAST(JSON_VALUE(body, '$.ts') AS BIGINT) AS ts,
  body
FROM (SELECT *, CAST(payload AS STRING) AS body FROM events_raw);

CREATE VIEW checked_events AS
SELECT
  *,
  CASE
    WHEN CHAR_LENGTH(body) > ${events.max_chars} THEN 'oversized: more than ${events.max_chars} characters'
    WHEN body SIMILAR TO '%(NaN|Infinity)%' THEN 'NaN or infinite number'
    WHEN NOT (body IS JSON OBJECT) THEN 'malformed JSON'
    WHEN entity IS NULL OR CHAR_LENGTH(TRIM(entity)) = 0 THEN 'missing key: entity'
    WHEN ts IS NULL THEN 'ts missing or not an integer'
    WHEN x1 IS NULL THEN 'x1 missing or not a number'
    WHEN x2 IS NULL THEN 'x2 missing or not a number'
    WHEN label_text NOT IN ('true', 'false') THEN 'label is not a boolean'
  END AS problem
FROM parsed_events;

CREATE VIEW events AS
SELECT entity, x1, x2, label_text = 'true' AS label, ts, event_time FROM checked_events WHERE problem IS NULL;
