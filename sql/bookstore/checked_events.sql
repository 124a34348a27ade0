-- Bookstore events (views and purchases of books by users), parsed and checked once; `problem`
-- names what is wrong, NULL when nothing is. sql/dead_letters.sql routes the rejected ones.
-- As in sql/checked_events.sql: JSON_FIELDS reads every field in one pass over the event, and
-- whole-body checks stay out of a valid event's path; the time checks are sql/checked_events.sql's.
CREATE VIEW checked_events_once AS
SELECT
  *,
  CASE
    WHEN CHAR_LENGTH(body) > ${events.max_chars} THEN 'oversized: more than ${events.max_chars} characters'
    WHEN malformed THEN JSON_PROBLEM(payload, 'book', 'user', 'action', 'ts')
    WHEN book IS NULL OR CHAR_LENGTH(TRIM(book)) = 0 THEN 'missing key: book'
    WHEN `user` IS NULL THEN 'missing field: user'
    WHEN action IS NULL OR action NOT IN ('view', 'purchase') THEN 'action must be view or purchase'
    WHEN ts IS NULL THEN 'ts missing or not an integer'
    WHEN ts < 0 THEN 'ts is negative'
    -- EVENT_TIME_MILLIS (sql/events.sql) gave the event time 0 for a ts too far ahead of the clock.
    WHEN ts > 0 AND event_time = UTC_TIMESTAMP_OF(0)
      THEN 'ts more than ${events.max_ahead_seconds} s ahead of the clock'
    -- Late: its tumbling window (sql/features.sql) ended before the watermark, so the window would drop
    -- it. The watermark here is never behind the windows', so what passes is never dropped there.
    WHEN UTC_TIMESTAMP_OF(ts - MOD(ts, ${window.size_seconds} * 1000) + ${window.size_seconds} * 1000 - 1)
         <= CURRENT_WATERMARK(event_time)
      THEN CONCAT('late: ', CAST(TIMESTAMPDIFF(SECOND, event_time, CURRENT_WATERMARK(event_time)) AS STRING),
                  ' s behind the watermark')
  END AS problem
FROM (
  SELECT
    payload, source_partition, source_offset, event_time, body,
    fields IS NULL AS malformed,
    fields[1] AS book,
    fields[2] AS `user`,
    fields[3] AS action,
    TRY_CAST(fields[4] AS BIGINT) AS ts
  FROM (
    SELECT *, CAST(payload AS STRING) AS body, JSON_FIELDS(payload, 'book', 'user', 'action', 'ts') AS fields
    FROM events_raw
  )
);

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
SELECT book, `user`, action, ts, event_time FROM checked_events WHERE problem IS NULL AND NOT handled_before;
