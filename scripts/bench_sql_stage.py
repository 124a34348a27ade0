"""The SQL feature stage alone, for scripts/bench.py: the job's DDL up to the feature view, into a
blackhole sink, so its events/s are measured without the learner."""

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
    table_env.get_config().set("pipeline.name", "bench-sql-stage")
    execute_sql_files(table_env, config)
    table_env.from_path(config["sql.features_view"]).execute_insert(TableDescriptor.for_connector("blackhole").build())


if __name__ == "__main__":
    main()
