-- Smoke pipeline transformation and its Kafka sink.
CREATE VIEW smoke_transformed_view AS
SELECT
  id,
  normalize_key(`user`) AS user_key,
  amount * 2 AS amount_doubled
FROM smoke_events;

CREATE TABLE smoke_transformed (
  id BIGINT,
  user_key STRING,
  amount_doubled DOUBLE
) WITH (
  'connector' = 'kafka',
  'topic' = '${topics.transformed.name}',
  'properties.bootstrap.servers' = '${kafka.bootstrap_servers}',
  'format' = 'json'
);
