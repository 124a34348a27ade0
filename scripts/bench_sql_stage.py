"""The SQL feature stage alone, for `scripts/bench.py`: the learner job's DDL and feature view into a
blackhole sink, so the events/s of parsing, checking and windowing are measured without the learner.

    scripts/submit.sh scripts/bench_sql_stage.py --config CONFIG [--plain-json]

With `--plain-json` the events come from Flink's own `'format' = 'json'` source on the same topic
instead, with no checks and no dead letters, into the same feature view (`sql/features.sql`): the
price of the checks is the ratio of the two. It runs with the config's `flink:` settings
(checkpointing, state backend), as the learner job does.

>>> print(PLAIN_JSON_EVENTS.splitlines()[0])
CREATE TABLE events (
"""

import argparse
import os

from pyflink.table import EnvironmentSettings, TableDescriptor, TableEnvironment

from jobs.config import load_config
from jobs.sql import execute_sql_files, load_sql, render_sql

# The events of sql/checked_events.sql as a plain JSON source reads them: typed columns, a row that
# does not parse fails the job. Its Kafka options are sql/events.sql's `events_raw`, with the format
# changed (`LIKE`; its `payload` column, no JSON field, reads as NULL), so both read the topic alike.
PLAIN_JSON_EVENTS = """CREATE TABLE events (
  entity STRING,
  x1 DOUBLE,
  x2 DOUBLE,
  label BOOLEAN,
  ts BIGINT,
  event_time AS UTC_TIMESTAMP_OF(ts),
  WATERMARK FOR event_time AS event_time - INTERVAL '${source.watermark_delay_seconds}' SECOND
) WITH ('format' = 'json')
LIKE events_raw (EXCLUDING ALL OVERWRITING OPTIONS)"""
# What the plain source needs of the job's DDL, in order: events_raw (and the functions it calls),
# then the feature view over `events`; its rowtime is the job's, a UTC wall clock (UTC_TIMESTAMP_OF).
SOURCE_DDL, FEATURES_DDL = ("functions.sql", "events.sql"), "features.sql"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/job.yaml")
    parser.add_argument(
        "--plain-json",
        action="store_true",
        help="read the events with Flink's json format, unchecked, instead of the job's DDL",
    )
    args = parser.parse_args(argv)

    config = load_config(args.config)
    table_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    for key, value in (config.get("flink", {}) or {}).items():
        table_env.get_config().set(key, str(value))
    table_env.get_config().set("pipeline.name", "bench-sql-stage" + ("-plain-json" if args.plain_json else ""))
    if args.plain_json:
        ddl = {os.path.basename(path): path for path in config["sql.ddl"]}
        for name in SOURCE_DDL:
            for statement in load_sql(ddl[name], config):
                table_env.execute_sql(statement)
        table_env.execute_sql(render_sql(PLAIN_JSON_EVENTS, config, "the plain JSON source"))
        for statement in load_sql(ddl[FEATURES_DDL], config):
            table_env.execute_sql(statement)
    else:
        execute_sql_files(table_env, config)
    # A blackhole table whose schema Flink derives from the feature view's.
    blackhole = TableDescriptor.for_connector("blackhole").build()
    table_env.from_path(config["sql.features_view"]).execute_insert(blackhole)


if __name__ == "__main__":
    main()
