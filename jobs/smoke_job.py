"""The smoke pipeline: Kafka JSON events -> a Flink SQL view -> another Kafka topic.

It proves the stack end to end (broker, cluster, connector, Python workers) with DDL from `sql/`
and topics from `conf/smoke.yaml`. Submit it with:

    scripts/submit.sh jobs/smoke_job.py --config conf/smoke.yaml
"""

import argparse

from pyflink.table import EnvironmentSettings, TableEnvironment

from jobs.config import ConfigError, exit_with, load_config
from jobs.sql import execute_sql_files


def main(argv=None):
    parser = argparse.ArgumentParser(description="Smoke pipeline: Kafka -> Flink SQL -> Kafka")
    parser.add_argument("--config", default="conf/smoke.yaml")
    args = parser.parse_args(argv)

    table_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    table_env.get_config().set("pipeline.name", "smoke-pipeline")
    try:
        config = load_config(args.config)
        execute_sql_files(table_env, config)
    except ConfigError as e:  # a DDL statement Flink rejects too, by its file and line
        exit_with(e)
    table_env.from_path(config["sql.insert.from"]).execute_insert(config["sql.insert.into"])


if __name__ == "__main__":
    main()
