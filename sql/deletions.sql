-- Requests to delete a key's model (README: Lifecycle: delete a key): a record keyed by the model key,
-- its value ignored. The learner removes the key's state and writes its tombstones (jobs/learner_job.py).
-- No event time: a request takes effect when it reaches the learner, and never moves or holds back the
-- job's watermark (the job marks this source idle while it has no requests).
CREATE TABLE deletion_requests (
  model_key STRING,
  request BYTES
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.deletions.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'properties.group.id' = '${source.group_id}-deletions',
  -- A job started without a checkpoint or savepoint takes every request not yet committed by its group:
  -- a request is never skipped, and doing one again is harmless (its key is gone already).
  'properties.auto.offset.reset' = 'earliest',
  'properties.metadata.recovery.strategy' = 'none',  -- as sql/events.sql's, for the same reason
  'scan.startup.mode' = 'group-offsets',
  -- A bounded job (source.bounded_mode: latest-offset) takes the requests there are, then finishes.
  'scan.bounded.mode' = '${source.bounded_mode}',
  'key.format' = 'raw',
  'key.fields' = 'model_key',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY'
);
