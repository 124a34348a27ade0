"""The init script for Flink's SQL client (scripts/sql-client.sh): the job's DDL, rendered by `jobs.sql`,
and its Flink options as SET statements, so that `SELECT * FROM features` runs as the job would read it.

Tables no view reads from are the job's sinks (it only writes into them); they are left out unless
asked for, so that exploring cannot write to the job's topics by mistake:

>>> statements = [Statement("CREATE TABLE events_raw (payload BYTES) WITH ()", "sql/events.sql", 7),
...               Statement("CREATE VIEW events AS SELECT * FROM events_raw", "sql/checked_events.sql", 52),
...               Statement("CREATE TABLE `predictions` (p DOUBLE) WITH ()", "sql/predictions.sql", 5)]
>>> [s.path for s in without_sinks(statements)]
['sql/events.sql', 'sql/checked_events.sql']

The client reads with its own consumer group and without the job's checkpoints, so a query never commits
offsets under the job's group (which the job resumes from):

>>> config = Config({"source": {"group_id": "learner-job"}, "sql": {"ddl": []},
...                  "flink": {"pipeline.name": "online-learner", "table.local-time-zone": "UTC",
...                            "execution.checkpointing.interval": "2 s"}}, "conf/job.yaml")
>>> print(init_script(config, with_sinks=False))
-- Rendered from conf/job.yaml by jobs/sql_client.py (scripts/sql-client.sh); sinks left out.
SET 'table.local-time-zone' = 'UTC';
SET 'pipeline.name' = 'sql-client (conf/job.yaml)';
<BLANKLINE>
>>> client_config(config, with_sinks=False)["source.group_id"]
'learner-job-sql-client'
"""

from __future__ import annotations

import argparse
import copy
import os
import re

from jobs.config import Config, ConfigError, exit_with, load_config
from jobs.sql import Statement, execute_statements, statements

_CREATE_TABLE = re.compile(r"^CREATE\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?([\w.]+)`?", re.I)
_CREATE_VIEW = re.compile(r"^CREATE\s+(?:TEMPORARY\s+)?VIEW\b", re.I)
# Options of a running job that a query from the client has no use for: checkpoints would commit the
# Kafka source's offsets and keep a checkpoint folder per cancelled query; the client names its own jobs.
_JOB_ONLY_OPTIONS = re.compile(r"^(execution\.checkpointing\.|pipeline\.name$)")
CLIENT_GROUP_SUFFIX = "-sql-client"


def client_config(config: Config, with_sinks: bool) -> Config:
    """`config` as the client reads it: its own consumer group; the job's checkpoints only with the sinks
    (an INSERT into an exactly-once sink commits on checkpoints)."""
    data = copy.deepcopy(config.data)
    source = data.get("source")
    if isinstance(source, dict) and "group_id" in source:
        source["group_id"] = f"{source['group_id']}{CLIENT_GROUP_SUFFIX}"
    flink = data.get("flink") or {}
    if not isinstance(flink, dict):
        raise config.error("flink", f"must be a mapping of Flink options, not {flink!r}")
    data["flink"] = {key: value for key, value in flink.items() if with_sinks or not _JOB_ONLY_OPTIONS.match(key)}
    data["flink"]["pipeline.name"] = f"sql-client ({config.source})"
    return Config(data, config.source)


def without_sinks(found: list[Statement]) -> list[Statement]:
    """The statements but the CREATE TABLEs whose table no view names (by word: a view with a column named
    like a sink keeps that sink, which is harmless)."""
    views = " ".join(s.text for s in found if _CREATE_VIEW.match(s.text))
    kept = []
    for statement in found:
        table = _CREATE_TABLE.match(statement.text)
        name = table and table.group(1).split(".")[-1]
        if not name or re.search(rf"(?<![\w`]){re.escape(name)}(?![\w`])|`{re.escape(name)}`", views):
            kept.append(statement)
    return kept


def _quoted(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def client_statements(config: Config, with_sinks: bool) -> list[Statement]:
    """The DDL statements of the client's config (`client_config`), in order, sinks left out unless asked."""
    found = [s for path in config["sql.ddl"] for s in statements(path, config)]
    return found if with_sinks else without_sinks(found)


def check(found: list[Statement]) -> None:
    """Run the statements in a local table environment first: the client reports a statement Flink
    rejects as "Failed to initialize" and exits 0, while this raises SqlError naming its file and line,
    as the job does at submit time. Starting the JVM takes a few seconds."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    # Nothing runs here, so PyFlink need not start its local ("loopback") Python worker server, whose
    # exit hook fails on Python 3.12 with a traceback ("can't create new thread at interpreter shutdown").
    # PyFlink's own switch for it (pyflink/table/table_environment.py, _open) is this variable.
    os.environ.setdefault("_python_worker_execution_mode", "process")
    execute_statements(TableEnvironment.create(EnvironmentSettings.in_streaming_mode()), found)


def init_script(config: Config, with_sinks: bool) -> str:
    """The SQL client's init file: the Flink options as SET statements, then every DDL statement in the
    config's order, each after a comment naming its file and line (the client's errors name neither)."""
    config = client_config(config, with_sinks)
    found = client_statements(config, with_sinks)
    lines = [
        f"-- Rendered from {config.source} by jobs/sql_client.py (scripts/sql-client.sh); "
        f"sinks {'included' if with_sinks else 'left out'}."
    ]
    lines += [f"SET {_quoted(key)} = {_quoted(value)};" for key, value in config["flink"].items()]
    for statement in found:
        lines += ["", f"-- {statement.path} line {statement.line}", f"{statement.text};"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write the init script of Flink's SQL client for a job config")
    parser.add_argument("--config", default="conf/job.yaml")
    parser.add_argument("--with-sinks", action="store_true", help="define the job's sink tables too")
    parser.add_argument("--output", required=True, help="the init script to write")
    parser.add_argument("--no-check", action="store_true", help="skip running the DDL in a local table environment")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        script = init_script(config, args.with_sinks)
        if not args.no_check:
            check(client_statements(client_config(config, args.with_sinks), args.with_sinks))
    except (ConfigError, OSError) as e:  # SqlError is a ConfigError
        exit_with(e)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(script)


if __name__ == "__main__":
    main()
