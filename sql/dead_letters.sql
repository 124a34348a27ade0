-- Events that fail the checks of the job's checked_events view go, as their original bytes, to the
-- dead-letter topic; the reason and where the event came from travel as headers. Each reason is counted
-- in the Flink metric dead_letters_<class> (sql/functions.sql, DEAD_LETTER_REASON), so a reason that
-- carries a measured detail puts it after a colon ('late: 12 s behind the watermark': dead_letters_late).
CREATE VIEW rejected_events AS
SELECT
  payload,
  MAP[
    'reason', CAST(DEAD_LETTER_REASON(problem) AS BYTES),
    'source.partition', CAST(CAST(source_partition AS STRING) AS BYTES),
    'source.offset', CAST(CAST(source_offset AS STRING) AS BYTES)
  ] AS headers
FROM checked_events WHERE problem IS NOT NULL AND NOT handled_before;

CREATE TABLE dead_letters (
  payload BYTES,
  headers MAP<STRING, BYTES> METADATA
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.dead_letters.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'format' = 'raw',
  'sink.delivery-guarantee' = '${sinks.delivery_guarantee}',
  'properties.transaction.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'properties.max.block.ms' = '${sinks.transaction_timeout_ms}',  -- why: sql/snapshots.sql
  'properties.delivery.timeout.ms' = '${sinks.transaction_timeout_ms}',
  'sink.transactional-id-prefix' = '${sinks.transactional_id_prefix}-dead-letters'
);
