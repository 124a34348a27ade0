"""The SQL feature stage alone, for `scripts/bench.py`: the learner job's DDL and feature view into a
blackhole sink, so the events/s of parsing, checking and windowing are measured without the learner.

    scripts/submit.sh scripts/bench_sql_stage.py --config CONFIG

It runs with the config's `flink:` settings (checkpointing, state backend), as the learner job does.
"""

import argparse

from pyflink.table import EnvironmentSettings, TableDescriptor, TableEnvironment

from jobs.config import load_config
from jobs.sql import execute_sql_files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/job.yaml")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    table_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    for key, value in (config.get("flink", {}) or {}).items():
        table_env.get_config().set(key, str(value))
    table_env.get_config().set("pipeline.name", "bench-sql-stage")
    execute_sql_files(table_env, config)
    # A blackhole table whose schema Flink derives from the feature view's.
    blackhole = TableDescriptor.for_connector("blackhole").build()
    table_env.from_path(config["sql.features_view"]).execute_insert(blackhole)


if __name__ == "__main__":
    main()
