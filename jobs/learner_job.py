"""The online learning job: Kafka events -> SQL window features -> one River model per key.

    Kafka --> sql/events.sql --> sql/features.sql (tumbling windows)
          --> (SQL) each row with the shard of its key --> a shard's rows per watermark, in the JVM --> keyed by shard
    Kafka --> sql/deletions.sql --> (SQL) one row-shaped record per request --/
          --> LearnerFunction (test-then-train, a state entry per key) --> predictions table
                                               \\-> snapshots side output --> snapshots table
                                               \\-> drifts side output --> drift events table
                                               \\-> quarantined rows --> dead-letter table
                                               \\-> expired and deleted keys' tombstones --> latest features table
          --> (SQL) latest features table: each key's newest window features, for serving by key alone

Everything a user changes lives in the config (`conf/job.yaml`) and the DDL it lists. Submit with:

    scripts/submit.sh jobs/learner_job.py --config conf/job.yaml

With `--history PATH` the job reads history files instead of Kafka (scripts/backfill.sh runs it so):

>>> from jobs.config import Config
>>> config = Config({"sql": {"ddl": ["sql/functions.sql", "sql/events.sql"]}, "history": {
...     "events_ddl": "sql/history_events.sql", "replaces": "sql/events.sql"}}, "/p/conf/job.yaml")
>>> history = history_config(config, "file:///h")
>>> history["sql.ddl"], history["history.path"]
(['sql/functions.sql', 'sql/history_events.sql'], 'file:///h')
"""

import argparse
import copy
import dataclasses
import glob
import os

from pyflink.common import Configuration, TypeInformation, Types
from pyflink.datastream import DataStream, KeyedStream, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import Schema, StreamTableEnvironment, Table
from pyflink.table.expressions import col
from pyflink.util.java_utils import get_java_class

from jobs.config import Config, ConfigError, exit_with, load_config, text
from jobs.shipped_code import ShippedCode
from jobs.sinks import SinkSettings
from jobs.sql import execute_sql_files
from jobs.upgrade import sql_fingerprint
from udfs.empty_windows import label_value_error
from udfs.envelope import feature_schema_hash
from udfs.feature_batches import ROW_COLUMNS, select_deletions, select_rows
from udfs.feature_types import FeatureTypeError, of_sql
from udfs.feature_records import select_records
from udfs.learner import Learner, LearnerSettings
from udfs.learner_function import (
    DRIFTS,
    FEATURE_TOMBSTONES,
    PICKLED_COLUMNS,
    PREDICTION_TYPE,
    QUARANTINED,
    SNAPSHOT_TYPE,
    SNAPSHOTS,
    LearnerFunction,
)
from udfs.model_spec import ModelSpecError, build_model, label_type_error, model_kind


def history_config(config: Config, path: str) -> Config:
    """`config` for a job over history files at `path`: `history.events_ddl` in the place of the DDL file
    `history.replaces` names in `sql.ddl`, and `history.path` set, for the DDL to read."""
    replaces, events_ddl = text(config, "history.replaces"), text(config, "history.events_ddl")
    ddl = list(config["sql.ddl"])
    matches = [i for i, p in enumerate(ddl) if config.file_path(p) == config.file_path(replaces)]
    if not matches:
        raise config.error("history.replaces", f"names {replaces}, which sql.ddl does not list")
    data = copy.deepcopy(config.data)
    data["sql"]["ddl"] = ddl[: matches[0]] + [events_ddl] + ddl[matches[0] + 1 :]
    data["history"]["path"] = path
    return Config(data, config.source)


def history_path(path: str) -> str:
    """--history as Flink's filesystem connector takes it: a URI (s3://..., a cluster's shared storage) as
    it is, a local file or folder as an absolute path, which must exist."""
    if "://" in path:
        return path
    if not os.path.exists(path):
        exit_with(f"--history {path}: no such file or folder")
    return os.path.abspath(path)


def history_jars() -> list[str]:
    """The jars a job over history files ships (pipeline.jars): the file format's and Hadoop's, which the
    cluster's classpath lacks (scripts/maven/history-jars.xml); HISTORY_JARS names another folder of them."""
    folder = os.environ.get("HISTORY_JARS") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib", "history"
    )
    jars = sorted(glob.glob(os.path.join(folder, "*.jar")))
    if not jars:
        exit_with(
            f"no jars in {folder} for reading history files: run scripts/setup.sh "
            "(scripts/maven/history-jars.xml), or set HISTORY_JARS to a folder of them"
        )
    return ["file://" + jar for jar in jars]


def compute_once(table_env, view: str, rowtime: str) -> None:
    """Make every later query of `view` read one computed stream of it instead of planning it anew.

    The learner's input becomes a DataStream, planned apart from the SQL inserts (dead letters, latest
    features), so each would otherwise read the Kafka topic and parse every event again. The view is
    turned into a DataStream once (its rowtime and watermarks carried along) and registered back
    under the same name, as a temporary view, which shadows the catalog's: the views defined on it
    (`events`, `features`, `rejected_events`) resolve their names when they are queried."""
    table = table_env.from_path(view)._j_table
    # As Flink's internal rows: the branches read them as they are, instead of each event's fields made
    # into Java objects (its bytes copied, its strings decoded) and back again for every branch.
    internal = (
        table.getResolvedSchema()
        .toPhysicalRowDataType()
        .bridgedTo(get_java_class(get_gateway().jvm.org.apache.flink.table.data.RowData))
    )
    stream = DataStream(table_env._j_tenv.toDataStream(table, internal))
    table_env.create_temporary_view(
        view, table_env.from_data_stream(stream, Schema.new_builder().watermark(rowtime, "SOURCE_WATERMARK()").build())
    )


# The feature view's rows for the latest-features topic, each key's newest per watermark (a temporary view
# of the job's own), and the rowtime column of the computed-once feature view.
LATEST_FEATURE_ROWS, ROWTIME = "latest_feature_rows", "learner_rowtime"


def features_once(table_env, view: str, window_end: str, key: str) -> None:
    """Make the feature view's readers (the learner's rows and the latest-features sink) read one computed
    stream of it, as `compute_once` does for the checked events: planned apart, each would aggregate
    every event into its window again. The latest-features sink reads `LATEST_FEATURE_ROWS`, each key's
    newest row per watermark of the same stream.

    The view comes back with a rowtime, `ROWTIME`, its window's last millisecond (what Flink's own
    `window_time` is), and the stream's watermarks: a DataStream made into a table without one declared
    loses them, and the learner's event-time timers wait for them."""
    key_field = list(table_env.from_path(view).get_schema().get_field_names()).index(key)
    stream = table_env.to_data_stream(table_env.from_path(view))
    table_env.create_temporary_view(
        view,
        table_env.from_data_stream(
            stream,
            Schema.new_builder()
            .column_by_expression(ROWTIME, f"CAST(`{window_end}` - INTERVAL '0.001' SECOND AS TIMESTAMP(3))")
            .watermark(ROWTIME, "SOURCE_WATERMARK()")
            .build(),
        ),
    )
    latest = held_rows(stream, get_gateway().jvm.realtime_learning.LatestPerKey(key_field), "latest-feature-rows")
    table_env.create_temporary_view(LATEST_FEATURE_ROWS, table_env.from_data_stream(latest))


def check_label(table_env, config, settings: LearnerSettings) -> None:
    """The feature view's label column exists and its SQL type suits the model's kind (and the challenger's),
    checked at submit time: a string label for a regressor or a binary-only model would fail the job's
    first row, and again at every restart."""
    view, label = config["sql.features_view"], config["features.label"]
    schema = table_env.from_path(view)._j_table.getResolvedSchema()
    column = schema.getColumn(label)
    if not column.isPresent():
        raise config.error(
            "features.label", f"names no column of view {view} (it has {', '.join(schema.getColumnNames())})"
        )
    logical = column.get().getDataType().getLogicalType()
    models = [("model", settings.model)]
    if settings.safety.challenger.enabled:
        models.append(("safety.challenger.model", settings.safety.challenger.model))
    for path, spec in models:
        model = build_model(spec, path)
        if reason := label_type_error(model, logical.getTypeRoot().name(), logical.asSummaryString()):
            whose = f" (for {path})" if path != "model" else ""
            raise config.error("features.label", f"(column {label} of view {view}) {reason}{whose}")
        empty = settings.empty_window_label
        if empty is not None and (reason := label_value_error(empty, logical.getTypeRoot().name(), model_kind(model))):
            raise config.error("features.empty_window_label", f"{reason} (column {label} of view {view})")


def feature_types_of(table_env, config, settings: LearnerSettings) -> tuple:
    """Each of `features.columns`' type (udfs/feature_types.py) from its SQL type in the feature view, read at
    submit time: the job publishes them with every model, and serving checks requests against them. A
    column the view lacks, or of a type River cannot learn as the learner receives it, stops the submit."""
    view = config["sql.features_view"]
    schema = table_env.from_path(view)._j_table.getResolvedSchema()
    types = []
    for name in settings.feature_names:
        column = schema.getColumn(name)
        if not column.isPresent():
            raise config.error(
                "features.columns",
                f"names {name}, no column of view {view} (it has {', '.join(schema.getColumnNames())})",
            )
        logical = column.get().getDataType().getLogicalType()
        try:
            # Nullability aside: a NULL feature reaches River as None whatever the type.
            types.append(of_sql(logical.getTypeRoot().name(), logical.asSummaryString().removesuffix(" NOT NULL")))
        except FeatureTypeError as e:
            raise config.error("features.columns", f"(column {name} of view {view}) {e}") from None
    return tuple(types)


# The learner's rows and the deletion requests, temporary views of the job's own.
LEARNER_ROWS, DELETION_REQUESTS = "learner_rows", "learner_deletion_requests"
# A deletions source without requests for this long is idle: it holds the job's watermark back no longer.
DELETIONS_IDLE_MS = 1000


def with_deletions(table_env, rows: Table, requests_table: str, shards: int) -> Table:
    """The learner's rows with the deletion requests of `requests_table` (its column `model_key`) among
    them, as rows (udfs.feature_batches.select_deletions), so that the learner stays one keyed input.

    A request has no event time, and its source must neither hold back nor move the rows' watermark:
    the requests pass through a watermark assigner that emits no watermark and marks the stream idle
    when no request came for DELETIONS_IDLE_MS. A request after that makes it active again, but behind
    the watermark already passed on, so Flink leaves it out of the minimum until it catches up, which it
    never does (StatusWatermarkValve): the rows' watermark alone goes on deciding."""
    gateway = get_gateway()
    requests = table_env.to_data_stream(table_env.from_path(requests_table).select(col("model_key")))
    strategy = gateway.jvm.org.apache.flink.api.common.eventtime.WatermarkStrategy.noWatermarks().withIdleness(
        gateway.jvm.java.time.Duration.ofMillis(DELETIONS_IDLE_MS)
    )
    idle = (
        requests._j_data_stream.assignTimestampsAndWatermarks(strategy)
        .uid("deletion-requests")
        .name("deletion-requests")
    )
    table_env.create_temporary_view(DELETION_REQUESTS, table_env.from_data_stream(DataStream(idle)))
    table_env.create_temporary_view(LEARNER_ROWS, rows)
    schema = rows._j_table.getResolvedSchema()
    later = [
        (c.getName(), c.getDataType().getLogicalType().copy(True).asSerializableString())
        for c in list(schema.getColumns())[len(ROW_COLUMNS) - 1 :]  # after the key
    ]
    return table_env.sql_query(
        f"SELECT * FROM `{LEARNER_ROWS}`\nUNION ALL\n" + select_deletions(DELETION_REQUESTS, "model_key", shards, later)
    )


# The learner's input: (shard, batches), the batches a pickled tuple of the shard's batches since the last
# watermark, each a tuple (shard, window_end_ms, keys, labels, *features), each array a tuple.
PICKLED_BATCHES = Types.ROW_NAMED(["shard", "batches"], [Types.INT(), Types.PICKLED_BYTE_ARRAY()])


def shard_stream(table_env, rows: Table) -> DataStream:
    """The learner's rows as a DataStream of (shard, pickled batches) rows, a shard's rows gathered until
    the next watermark into a batch per window (java/realtime_learning/PickledBatches.java).

    The shard comes first because that is the shape PyFlink's keyed operators take, so that
    `key_by_shard` can key in the JVM. The embedded keyed operator needs a RowTypeInfo input, which only
    the legacy table conversion gives (the rows' own conversion, to Java types the pickle writer knows)."""
    gateway = get_gateway()
    converter = gateway.jvm.org.apache.flink.table.types.utils.LegacyTypeInfoDataTypeConverter
    row_type = converter.toLegacyTypeInfo(rows._j_table.getResolvedSchema().toPhysicalRowDataType())
    stream = DataStream(table_env._j_tenv.toAppendStream(rows._j_table, row_type))
    return held_rows(stream, gateway.jvm.realtime_learning.PickledBatches(), "pickled-batches", PICKLED_BATCHES)


def held_rows(stream: DataStream, held, uid: str, row_type: TypeInformation | None = None) -> DataStream:
    """`stream`'s rows through `held` (a java/realtime_learning/HeldRows), held until the next watermark,
    checkpoint barrier or end of input; rows of `row_type` out, of the input's type if None. Stateless."""
    out_type = row_type.get_java_type_info() if row_type is not None else stream._j_data_stream.getType()
    j_held = stream._j_data_stream.transform(uid, out_type, get_gateway().jvm.realtime_learning.HeldRowsOperator(held))
    return DataStream(j_held.uid(uid))


def key_by_shard(stream: DataStream) -> KeyedStream:
    """(shard, batch) rows keyed by shard in the JVM.

    `DataStream.key_by` would run a Python key selector, a Python operator of its own in front of the
    learner: one more call into Python per batch. PyFlink's own key_by ends in this same keyBy."""
    key_type = Types.ROW([Types.INT()]).get_java_type_info()
    j_keyed = stream._j_data_stream.keyBy(get_gateway().jvm.KeyByKeySelector(), key_type)
    return KeyedStream(j_keyed, Types.PICKLED_BYTE_ARRAY(), stream)


def side_output(stream: DataStream, tag) -> DataStream:
    """The side output of the Python operator `stream` tagged `tag`, typed by the tag, in the JVM.

    PyFlink's `get_side_output` adds an identity map in Python behind it: one more Python operator,
    whose calls, in thread mode, wait for the same interpreter lock as the learner's. The map is also
    what makes PyFlink tell the operator of its side output (it finds side outputs from the
    environment's operators when the job is built, and a stream read only by SQL is not one of them),
    so that is done here."""
    j_tag = tag.get_java_output_tag()
    operator = stream._j_data_stream.getTransformation().getOperatorFactory().getOperator()
    operator.addSideOutputTags(get_gateway().jvm.java.util.Collections.singletonList(j_tag))
    return DataStream(stream._j_data_stream.getSideOutput(j_tag))


def columns_to_rows(stream: DataStream, row_type: TypeInformation, uid: str) -> DataStream:
    """The rows of `stream`'s pickled records of columns (udfs.learner_function.PICKLED_COLUMNS), made in the JVM."""
    j_rows = stream._j_data_stream.flatMap(
        get_gateway().jvm.realtime_learning.PickledColumnsToRows(row_type.get_java_type_info())
    )
    return DataStream(j_rows.uid(uid).name(uid))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Online learning: one River model per key, in Flink state")
    parser.add_argument("--config", default="conf/job.yaml")
    parser.add_argument(
        "--parallelism",
        type=int,
        help="overrides the config's flink parallelism.default "
        "(scripts/rescale.sh passes it: a program's own configuration wins over flink run -p)",
    )
    parser.add_argument(
        "--history",
        metavar="PATH",
        help="read history files (a file or folder) instead of "
        "Kafka, with history.events_ddl in the config (scripts/backfill.sh)",
    )
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config)
        if args.history is not None:
            config = history_config(config, history_path(args.history))
        settings = LearnerSettings.from_config(config)
        SinkSettings.from_config(config)
        Learner(settings, settings.signing.keyring(config.error))  # a bad model spec fails here, at submit time
    except (ConfigError, ModelSpecError) as e:
        exit_with(e)

    flink_config = Configuration()
    for key, value in (config.get("flink", {}) or {}).items():
        flink_config.set_string(key, str(value))
    if args.parallelism is not None:
        if not 1 <= args.parallelism <= int(flink_config.get_string("pipeline.max-parallelism", "32768")):
            exit_with(
                f"--parallelism {args.parallelism} is not between 1 and the max parallelism "
                f"(flink: pipeline.max-parallelism in {args.config})"
            )
        flink_config.set_string("parallelism.default", str(args.parallelism))
    # scripts/upgrade.sh reads it back (REST /jobs/<id>/config) to tell whether the new version's SQL is this one's.
    sql_id = sql_fingerprint(config)
    parameters = flink_config.get_string("pipeline.global-job-parameters", "")
    flink_config.set_string(
        "pipeline.global-job-parameters", ",".join(filter(None, [parameters, f"sql.fingerprint:{sql_id}"]))
    )
    env = StreamExecutionEnvironment.get_execution_environment(flink_config)
    table_env = StreamTableEnvironment.create(env)
    # Table options (table.local-time-zone among them) go onto the TableConfig too: read through the
    # environment alone, TableConfig.getLocalTimeZone() still answers the JVM's zone.
    for key in flink_config.key_set():
        if key.startswith("table."):
            table_env.get_config().set(key, flink_config.get_string(key, ""))
    if args.history is not None:
        # Shipped with the job rather than put on the cluster's classpath; set on the TableConfig, which
        # also loads them into this client, where the planner looks the format up.
        table_env.get_config().set("pipeline.jars", ";".join(history_jars()))
    # SQL operators get uids tied to the DDL's text: an upgrade with changed SQL starts them afresh
    # (scripts/upgrade.sh has the new job re-read their open windows), while the learner's state, uid
    # "learner-shards", carries over.
    table_env.get_config().set("table.exec.uid.generation", "ALWAYS")
    table_env.get_config().set("table.exec.uid.format", f"sql-{sql_id}-<id>_<transformation>")
    try:
        # A statement Flink rejects stops here, before any job starts, named by its file and line.
        execute_sql_files(table_env, config)
        check_label(table_env, config, settings)
        settings = dataclasses.replace(settings, feature_types=feature_types_of(table_env, config, settings))
    except ConfigError as e:
        exit_with(e)

    compute_once(table_env, config["sql.checked_view"], config["sql.rowtime"])
    key = config["features.key"]
    features_once(table_env, config["sql.features_view"], config["features.window_end"], key)
    rows = table_env.sql_query(
        select_rows(
            config["sql.features_view"],
            key,
            config["features.window_end"],
            config["features.label"],
            settings.feature_names,
            settings.shards,
        )
    )
    deletions = config.get("sql.deletions_table", None)
    if deletions:
        rows = with_deletions(table_env, rows, deletions, settings.shards)
    learner = (
        key_by_shard(shard_stream(table_env, rows))
        .process(ShippedCode(LearnerFunction(settings)), output_type=PICKLED_COLUMNS)
        .uid("learner-shards")
        .name("learner")
        # The learner's thread is the job's busiest: its outputs' conversions and Kafka writers run in
        # tasks of their own, on another core, rather than inside its calls into Python.
        .disable_chaining()
    )
    predictions = columns_to_rows(learner, PREDICTION_TYPE, "learner-predictions")
    snapshots = columns_to_rows(side_output(learner, SNAPSHOTS), SNAPSHOT_TYPE, "learner-snapshots")
    drifts, quarantined = (side_output(learner, tag) for tag in (DRIFTS, QUARANTINED))
    # In SQL, from the feature view's rows (computed once, beside the batches; a key's newest per watermark):
    # not from the batches, which Flink would copy whole for each row UNNEST makes of them; in Python it
    # would cost every row a call.
    latest_features = table_env.sql_query(
        select_records(
            LATEST_FEATURE_ROWS,
            key,
            config["features.window_end"],
            settings.feature_names,
            feature_schema_hash(settings.feature_names),
        )
    )

    sinks = table_env.create_statement_set()
    sinks.add_insert(config["sql.predictions_table"], table_env.from_data_stream(predictions))
    sinks.add_insert(config["sql.snapshots_table"], table_env.from_data_stream(snapshots))
    if settings.idle_ttl_ms or deletions:
        # Expired (lifecycle.idle_ttl_seconds) and deleted keys' tombstones join the SQL rows: one insert per
        # sink table.
        tombstones = table_env.from_data_stream(side_output(learner, FEATURE_TOMBSTONES))
        latest_features = latest_features.union_all(tombstones)
    sinks.add_insert(config["sql.features_table"], latest_features)
    sinks.add_insert(config["sql.drifts_table"], table_env.from_data_stream(drifts))
    # One insert per sink table: two would be two Kafka writers sharing one transactional id prefix.
    rejected = table_env.from_path(config["sql.dead_letters.from"])
    sinks.add_insert(config["sql.dead_letters.into"], rejected.union_all(table_env.from_data_stream(quarantined)))
    sinks.execute()


if __name__ == "__main__":
    main()
