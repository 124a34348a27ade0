-- Every event is parsed and checked once; `problem` names what is wrong, NULL when nothing is.
-- Add a field: name it in JSON_FIELDS, read it below, check it in the CASE, and select it in `events`
-- (a number: check that it is finite, as x1 and x2 are).
-- JSON_FIELDS (sql/functions.sql) reads every named field in one pass over the event, and is NULL when
-- the event is not one JSON object in UTF-8 or names a field it reads twice; JSON_PROBLEM, called for
-- those events only, says which (keep its list of fields JSON_FIELDS's). Values are read as text and cast with TRY_CAST, so a wrong type gives
-- NULL, never an error. Keep whole-body checks out of a valid event's path.
CREATE VIEW parsed_events AS
SELECT
  payload,
  source_partition,
  source_offset,
  event_time,
  body,
  fields IS NULL AS malformed,
  fields[1] AS entity,
  TRY_CAST(fields[2] AS BIGINT) AS ts,
  TRY_CAST(fields[3] AS DOUBLE) AS x1,
  TRY_CAST(fields[4] AS DOUBLE) AS x2,
  fields[5] AS label_text
FROM (
  SELECT *, CAST(payload AS STRING) AS body, JSON_FIELDS(payload, 'entity', 'ts', 'x1', 'x2', 'label') AS fields
  FROM events_raw
);

CREATE VIEW checked_events_once AS
SELECT
  *,
  CASE
    WHEN CHAR_LENGTH(body) > ${events.max_chars} THEN 'oversized: more than ${events.max_chars} characters'
    WHEN malformed THEN JSON_PROBLEM(payload, 'entity', 'ts', 'x1', 'x2', 'label')
    WHEN entity IS NULL OR CHAR_LENGTH(TRIM(entity)) = 0 THEN 'missing key: entity'
    -- A key names a model, a Kafka record key and a serving URL: control characters have no place there.
    WHEN REGEXP(entity, '[\x00-\x1F\x7F-\x9F]') THEN 'entity has a control character'
    WHEN ts IS NULL THEN 'ts missing or not an integer'
    WHEN ts < 0 THEN 'ts is negative'
    -- EVENT_TIME_MILLIS (sql/events.sql) gave the event time 0 for a ts too far ahead of the clock.
    WHEN ts > 0 AND event_time = UTC_TIMESTAMP_OF(0)
      THEN 'ts more than ${events.max_ahead_seconds} s ahead of the clock'
    WHEN x1 IS NULL THEN 'x1 missing or not a number'
    WHEN x2 IS NULL THEN 'x2 missing or not a number'
    -- NaN and the infinities (1e309 reads as one) are not equal to themselves minus themselves.
    WHEN x1 - x1 <> 0 THEN 'x1 is not a finite number'
    WHEN x2 - x2 <> 0 THEN 'x2 is not a finite number'
    -- No label (null or absent) is an unlabeled event: predicted, not learned from (the learner counts it as
    -- unlabeled); it is also how a delayed label's first windows arrive (features.label_delay_windows).
    WHEN label_text NOT IN ('true', 'false') THEN 'label is not a boolean'
    -- Late: its tumbling window (sql/features.sql) ended before the watermark, so the window would drop
    -- it. The watermark here is never behind the windows', so what passes is never dropped there.
    WHEN UTC_TIMESTAMP_OF(ts - MOD(ts, ${window.size_seconds} * 1000) + ${window.size_seconds} * 1000 - 1)
         <= CURRENT_WATERMARK(event_time)
      THEN CONCAT('late: ', CAST(TIMESTAMPDIFF(SECOND, event_time, CURRENT_WATERMARK(event_time)) AS STRING),
                  ' s behind the watermark')
  END AS problem
FROM parsed_events;

-- `handled_before`: an event the job this one upgraded had read (before source.replay.until_offsets,
-- scripts/upgrade.sh with changed SQL, jobs/upgrade.py) and so learned or dead-lettered, unless its window
-- was still open then (ts from source.replay.from_ms on): those are taken again, the others skipped, so
-- that every event is accepted or dead-lettered once across the upgrade. With no replay set, none is.
CREATE VIEW checked_events AS
SELECT
  *,
  source_offset < COALESCE(CAST(
      STR_TO_MAP('${source.replay.until_offsets}', ',', ':')[CAST(source_partition AS STRING)] AS BIGINT), 0)
    AND NOT COALESCE(ts >= ${source.replay.from_ms} AND (problem IS NULL OR problem LIKE 'late:%'), FALSE)
    AS handled_before
FROM checked_events_once;

CREATE VIEW events AS
SELECT entity, x1, x2, label_text = 'true' AS label, ts, event_time FROM checked_events WHERE problem IS NULL AND NOT handled_before;
