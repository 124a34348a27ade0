-- Raw events from Kafka, as bytes, with event time and a watermark that allows late events.
-- Events are checked in SQL (sql/checked_events.sql): valid ones feed the windows, the others go to
-- the dead-letter topic with their original bytes. An event without a usable `ts` (missing, negative,
-- or more than events.max_ahead_seconds ahead of the clock) gets event time 0, so it never moves the
-- watermark.
-- JSON_FIELDS (sql/functions.sql) reads only `ts` here; the checks parse the rest of the event once.
CREATE TABLE events_raw (
  payload BYTES,
  source_partition INT METADATA FROM 'partition' VIRTUAL,
  source_offset BIGINT METADATA FROM 'offset' VIRTUAL,
  -- An out-of-range ts (sql/functions.sql) counts as 0 here, so that it never moves the watermark:
  -- sql/checked_events.sql dead-letters the event. A TIMESTAMP(3) holding UTC, not a TIMESTAMP_LTZ, so
  -- that windows never follow a local clock (sql/functions.sql, UTC_TIMESTAMP_OF).
  event_time AS UTC_TIMESTAMP_OF(EVENT_TIME_MILLIS(JSON_FIELDS(payload, 'ts')[1], ${events.max_ahead_seconds})),
  WATERMARK FOR event_time AS event_time - INTERVAL '${source.watermark_delay_seconds}' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.events.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'properties.group.id' = '${source.group_id}',
  'properties.auto.offset.reset' = 'earliest',
  -- Kafka's clients re-bootstrap by default once no broker has answered for 5 minutes, and the source's
  -- admin client (in the JobManager) then does so in a busy loop until the brokers are back and after:
  -- a core and thousands of log lines a second through a long outage. 'none' keeps retrying the
  -- brokers it knows; set 'rebootstrap' only where every broker's address can change at once.
  'properties.metadata.recovery.strategy' = 'none',
  'scan.startup.mode' = '${source.startup_mode}',
  -- With startup_mode specific-offsets (written by scripts/upgrade.sh when the SQL changed; jobs/upgrade.py).
  'scan.startup.specific-offsets' = '${source.specific_offsets}',
  'scan.bounded.mode' = '${source.bounded_mode}',
  'scan.watermark.idle-timeout' = '${source.idle_timeout}',
  'format' = 'raw'
);
