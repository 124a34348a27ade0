"""The config loader, the SQL loader and topic declarations, without services."""

import re

import pytest

from jobs.config import Config, ConfigError, derive_config, load_config
from jobs.learner_job import history_config
from jobs.sinks import SinkSettings
from jobs.sql import load_sql, rejected, render_sql, statements
from jobs.topics import declared_topics


def test_shipped_configs_declare_their_topics():
    smoke = load_config("conf/smoke.yaml")
    assert [t.name for t in declared_topics(smoke)] == ["smoke-events", "smoke-transformed"]


def test_every_smoke_ddl_renders_without_unknown_variables():
    config = load_config("conf/smoke.yaml")
    statements = [s for path in config["sql.ddl"] for s in load_sql(path, config)]
    assert len(statements) == 4
    assert all("${" not in s for s in statements)
    assert "'topic' = 'smoke-events'" in statements[1]


def test_unknown_variable_names_file_line_and_config():
    config = Config({"topics": {"events": {"name": "e"}}}, "/x/conf/job.yaml")
    with pytest.raises(ConfigError, match=r"events.sql line 3: \$\{topics.events.partitions\} is not set in job.yaml"):
        render_sql("a\nb\n'${topics.events.partitions}'", config, "events.sql")


def test_a_mapping_is_not_a_sql_value():
    config = Config({"topics": {"events": {"name": "e"}}}, "job.yaml")
    with pytest.raises(ConfigError, match="is a dict, not a value"):
        render_sql("${topics.events}", config, "events.sql")


def test_broken_yaml_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("topics: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "absent.yaml"))


def test_topic_without_name_is_an_error():
    with pytest.raises(ConfigError, match="'topics.events' needs a mapping with at least 'name'"):
        declared_topics(Config({"topics": {"events": {"partitions": 2}}}, "job.yaml"))


def test_derived_config_has_its_own_names_and_keeps_the_project_ddl(tmp_path):
    base = load_config("conf/job.yaml")
    derived = derive_config(base, str(tmp_path / "conf" / "run.yaml"), "abc123", {"window": {"size_seconds": 3}})
    assert derived["topics.snapshots.name"] == "model-snapshots-abc123"
    assert derived["topics.snapshots.config"] == base["topics.snapshots.config"]
    assert derived["source.group_id"] == "learner-job-abc123"
    assert derived["sinks.transactional_id_prefix"] == "learner-job-abc123"
    assert derived["window.size_seconds"] == 3
    assert all(path.startswith(base.base_dir) for path in derived["sql.ddl"])
    assert load_sql(derived["sql.ddl"][0], derived)  # the DDL renders from the derived config


@pytest.mark.parametrize("derived", [False, True])
def test_a_history_job_reads_events_raw_from_files_and_leaves_the_other_ddl_alone(tmp_path, derived):
    config = shipped = load_config("conf/job.yaml")
    if derived:  # as the tests' configs are: DDL paths absolute, into the project's sql/
        config = derive_config(shipped, str(tmp_path / "conf" / "job.yaml"), "abc123")
    history = history_config(config, "/data/history")
    ddl = [p.removeprefix(shipped.base_dir + "/") for p in history["sql.ddl"]]
    assert ddl == [p if p != "sql/events.sql" else "sql/history_events.sql" for p in shipped["sql.ddl"]]
    [events_raw] = load_sql(history["sql.ddl"][1], history)
    assert "'connector' = 'filesystem'" in events_raw and "'path' = '/data/history'" in events_raw
    assert "'format' = 'parquet'" in events_raw and "'source.monitor-interval' = '1 s'" in events_raw
    assert config["sql.ddl"][1].endswith("sql/events.sql")  # the streaming job's config is unchanged


def test_a_history_ddl_that_replaces_no_listed_file_is_named():
    config = Config(
        {
            "sql": {"ddl": ["sql/events.sql"]},
            "history": {"events_ddl": "sql/history_events.sql", "replaces": "sql/kafka_events.sql"},
        },
        "/p/conf/job.yaml",
    )
    with pytest.raises(
        ConfigError, match="job.yaml: 'history.replaces' names sql/kafka_events.sql, which sql.ddl does not list"
    ):
        history_config(config, "/h")


def test_a_comment_ending_in_a_semicolon_does_not_end_a_statement(tmp_path):
    (tmp_path / "two.sql").write_text(
        "-- first;\nCREATE VIEW a AS\n  -- a note;\n  SELECT 1;\nCREATE VIEW b AS SELECT 2;\n"
    )
    config = Config({}, str(tmp_path / "job.yaml"))
    assert load_sql(str(tmp_path / "two.sql"), config) == [
        "CREATE VIEW a AS\n\n  SELECT 1",
        "CREATE VIEW b AS SELECT 2",
    ]


def test_each_statement_knows_the_file_line_it_starts_on_and_a_rejection_is_reported_there(tmp_path):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "views.sql").write_text(
        "-- views;\n\nCREATE VIEW a AS\n  SELECT ${x};\n\n\n  CREATE VIEW b AS\n  SELECT nope\n  FROM a;\n"
    )
    config = Config({"x": 1}, str(tmp_path / "conf" / "job.yaml"))
    a, b = statements("sql/views.sql", config)
    assert (a.text, a.line, b.line) == ("CREATE VIEW a AS\n  SELECT 1", 3, 7)
    # Flink's validation message counts lines from the statement's first: line 2 of b is the file's line 8.
    message = "From line 2, column 10 to line 2, column 13: Column 'nope' not found in any table"
    assert rejected(b, message) == "sql/views.sql line 8: Column 'nope' not found in any table (column 10)"
    # An absolute path inside the config's project folder is shown from there too.
    assert statements(str(tmp_path / "sql" / "views.sql"), config)[0].path == "sql/views.sql"
    assert (
        rejected(a, "Could not execute CreateTable in path `a`\nCaused by: ...")
        == "sql/views.sql line 3: Could not execute CreateTable in path `a`"
    )


def test_the_jobs_topics_carry_the_replication_settings_of_the_local_broker():
    topics = declared_topics(load_config("conf/job.yaml"))
    assert {t.name: (t.replication_factor, t.topic_configs["min.insync.replicas"]) for t in topics} == {
        t.name: (1, "1") for t in topics
    }
    snapshots = next(t for t in topics if t.name == "model-snapshots")
    assert snapshots.topic_configs["cleanup.policy"] == "compact"  # the topic's own configs are kept beside them


def test_a_cluster_config_sets_replication_for_every_topic_and_a_topic_can_differ():
    config = Config(
        {
            "kafka": {"replication_factor": 3, "topic_config": {"min.insync.replicas": 2}},
            "topics": {
                "events": {"name": "e", "partitions": 8},
                "drifts": {"name": "d", "replication_factor": 2, "config": {"min.insync.replicas": 1}},
            },
        },
        "job.yaml",
    )
    events, drifts = declared_topics(config)
    assert (events.num_partitions, events.replication_factor, events.topic_configs) == (
        8,
        3,
        {"min.insync.replicas": "2"},
    )
    assert (drifts.replication_factor, drifts.topic_configs) == (2, {"min.insync.replicas": "1"})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"kafka": {"replication_factor": 0}}, "'kafka.replication_factor' must be a whole number >= 1, not 0"),
        ({"kafka": {"replication_factor": "3"}}, "'kafka.replication_factor' must be a whole number >= 1, not '3'"),
        ({"topics": {"e": {"name": "e", "replication_factor": True}}}, "'topics.e.replication_factor' must be a whole"),
        ({"topics": {"e": {"name": "e", "partitions": 0}}}, "'topics.e.partitions' must be a whole number >= 1"),
        (
            {"kafka": {"topic_config": {"min.insync.replicas": 2}}},
            "'kafka.topic_config.min.insync.replicas' must be a whole number no larger than topic "
            "'e''s replication factor (1)",
        ),
        (
            {"kafka": {"replication_factor": 3}, "topics": {"e": {"name": "e", "config": {"min.insync.replicas": 4}}}},
            "'topics.e.config.min.insync.replicas' must be a whole number no larger than topic "
            "'e''s replication factor (3)",
        ),
        ({"kafka": {"topic_config": [1]}}, "'kafka.topic_config' must be a mapping"),
    ],
)
def test_wrong_replication_settings_name_the_setting(data, message):
    data = {"topics": {"e": {"name": "e"}}, **data}
    with pytest.raises(ConfigError, match=re.escape(f"job.yaml: {message}")):
        declared_topics(Config(data, "job.yaml"))


@pytest.mark.parametrize("path", ["conf/job.yaml", "conf/bookstore.yaml"])
def test_a_shipped_learner_config_cancels_tasks_slower_than_its_sinks_wait_for_a_broker(path):
    settings = SinkSettings.from_config(load_config(path))
    assert settings.delivery_guarantee == "exactly-once"


@pytest.mark.parametrize(
    "flink, message",
    [
        ({}, "not Flink's default 180000 ms"),
        ({"task.cancellation.timeout": "15 min"}, "not 15 min (900000 ms)"),
        ({"task.cancellation.timeout": "soon"}, "must be a duration"),
    ],
)
def test_a_cancellation_timeout_within_the_sinks_broker_wait_is_refused_naming_both(flink, message):
    config = Config({"sinks": {"transaction_timeout_ms": 900_000}, "flink": flink}, "job.yaml")
    with pytest.raises(ConfigError, match="'flink.task.cancellation.timeout'") as error:
        SinkSettings.from_config(config)
    assert message in str(error.value)
