"""The online learning job: Kafka events -> SQL window features -> one River model per key.

    Kafka --> sql/events.sql --> sql/features.sql (tumbling windows) --> key_by(key)
          --> LearnerFunction (test-then-train) --> predictions table
                                               \\-> snapshots side output --> snapshots table
                                               \\-> drifts side output --> drift events table
                                               \\-> quarantined rows --> dead-letter table
          --> (SQL) latest features table: each key's newest window features, for serving by key alone

Everything a user changes lives in the config (`conf/job.yaml`) and the DDL it lists. Submit with:

    scripts/submit.sh jobs/learner_job.py --config conf/job.yaml
"""

import argparse
import hashlib
import sys

from pyflink.common import Configuration, Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
from pyflink.table.expressions import col

from jobs.config import ConfigError, load_config
from jobs.sql import ddl_statements
from udfs.envelope import feature_schema_hash
from udfs.feature_records import select_records
from udfs.learner import Learner, LearnerSettings
from udfs.learner_function import (
    DRIFTS,
    PREDICTION_TYPE,
    QUARANTINED,
    SNAPSHOTS,
    LearnerFunction,
)
from udfs.model_spec import ModelSpecError


def fingerprint(statements) -> str:
    return hashlib.sha256("\n".join(statements).encode()).hexdigest()[:10]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Online learning: one River model per key, in Flink state")
    parser.add_argument("--config", default="conf/job.yaml")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config)
        settings = LearnerSettings.from_config(config)
        Learner(settings)  # a bad model spec fails here, at submit time
    except (ConfigError, ModelSpecError) as e:
        sys.exit(f"error: {e}")

    flink_config = Configuration()
    for key, value in (config.get("flink", {}) or {}).items():
        flink_config.set_string(key, str(value))
    env = StreamExecutionEnvironment.get_execution_environment(flink_config)
    table_env = StreamTableEnvironment.create(env)
    # SQL operators get uids tied to the DDL's text: an upgrade with changed SQL starts them afresh
    # (scripts/upgrade.sh drains their windows first), while the learner's state, uid "learner", carries over.
    ddl = ddl_statements(config)
    table_env.get_config().set("table.exec.uid.generation", "ALWAYS")
    table_env.get_config().set("table.exec.uid.format", f"sql-{fingerprint(ddl)}-<id>_<transformation>")
    for statement in ddl:
        table_env.execute_sql(statement)

    feature_rows = table_env.to_data_stream(
        table_env.from_path(config["sql.features_view"]).select(
            col(config["features.key"]),
            col(config["features.window_end"]),
            col(config["features.label"]),
            *[col(name) for name in settings.feature_names],
        )
    )
    predictions = (
        feature_rows.key_by(lambda row: row[0], key_type=Types.STRING())
        .process(LearnerFunction(settings), output_type=PREDICTION_TYPE)
        .uid("learner")
        .name("learner")
    )
    snapshots = predictions.get_side_output(SNAPSHOTS)
    drifts = predictions.get_side_output(DRIFTS)
    quarantined = predictions.get_side_output(QUARANTINED)
    # From the same feature rows (querying the view again would compute its windows twice), in SQL
    # rather than a Python map: a Python operator costs every row a round trip to a Python worker.
    table_env.create_temporary_view("learner_feature_rows", table_env.from_data_stream(feature_rows))
    latest_features = table_env.sql_query(select_records(
        "learner_feature_rows", config["features.key"], config["features.window_end"],
        settings.feature_names, feature_schema_hash(settings.feature_names)))

    sinks = table_env.create_statement_set()
    sinks.add_insert(config["sql.predictions_table"], table_env.from_data_stream(predictions))
    sinks.add_insert(config["sql.snapshots_table"], table_env.from_data_stream(snapshots))
    sinks.add_insert(config["sql.features_table"], latest_features)
    sinks.add_insert(config["sql.drifts_table"], table_env.from_data_stream(drifts))
    # One insert per sink table: two would be two Kafka writers sharing one transactional id prefix.
    rejected = table_env.from_path(config["sql.dead_letters.from"])
    sinks.add_insert(config["sql.dead_letters.into"], rejected.union_all(table_env.from_data_stream(quarantined)))
    sinks.execute()


if __name__ == "__main__":
    main()
