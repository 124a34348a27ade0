"""The SQL client's init script (jobs/sql_client.py) from the shipped configs, without services."""

import os
import re
import subprocess
import sys

import pytest

from jobs.config import load_config
from jobs.sql_client import init_script


def created(script: str) -> list[str]:
    return re.findall(
        r"(?m)^CREATE (?:TEMPORARY )?(?:SYSTEM )?(?:TABLE|VIEW|FUNCTION)(?: IF NOT EXISTS)? (\w+)", script
    )


def test_the_jobs_sources_views_and_functions_are_defined_and_its_sinks_left_out():
    script = init_script(load_config("conf/job.yaml"), with_sinks=False)
    assert created(script) == [
        "JSON_FIELDS",
        "JSON_PROBLEM",
        "EVENT_TIME_MILLIS",
        "UTC_TIMESTAMP_OF",
        "UTC_MILLIS",
        "DEAD_LETTER_REASON",
        "events_raw",
        "parsed_events",
        "checked_events_once",
        "checked_events",
        "events",
        "rejected_events",
        "features",
    ]
    assert "${" not in script
    # Each statement is preceded by where it comes from, for errors the client reports without a file.
    assert "-- sql/features.sql line 3\nCREATE VIEW features AS" in script
    # The client's own consumer group, so that a query never commits offsets under the job's.
    assert "'properties.group.id' = 'learner-job-sql-client'" in script
    assert "execution.checkpointing" not in script
    assert "SET 'pipeline.auto-watermark-interval' = '50 ms';" in script


def test_with_sinks_every_table_is_defined_and_checkpoints_are_on():
    script = init_script(load_config("conf/job.yaml"), with_sinks=True)
    for sink in ("dead_letters", "drift_events", "predictions", "model_snapshots", "latest_features"):
        assert sink in created(script)
    assert "SET 'execution.checkpointing.interval' = '2 s';" in script


def test_the_smoke_configs_sink_is_left_out_and_its_python_function_kept():
    assert created(init_script(load_config("conf/smoke.yaml"), with_sinks=False)) == [
        "normalize_key",
        "smoke_events",
        "smoke_transformed_view",
    ]


def write_init(tmp_path, ddl: str | None):
    """Run `python -m jobs.sql_client` on a config listing sql/view.sql (holding `ddl`, or missing)."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "job.yaml").write_text("sql: {ddl: [sql/view.sql]}\n")
    if ddl is not None:
        (tmp_path / "sql").mkdir()
        (tmp_path / "sql" / "view.sql").write_text(ddl)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.sql_client",
            "--config",
            str(tmp_path / "conf" / "job.yaml"),
            "--output",
            str(tmp_path / "init.sql"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )


def test_a_missing_ddl_file_is_one_line_naming_it_and_exit_code_2(tmp_path):
    result = write_init(tmp_path, None)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "sql/view.sql" in result.stderr, result.stderr


@pytest.mark.timeout(120)
def test_a_statement_flink_rejects_is_named_by_file_and_line_before_the_client_starts(tmp_path):
    # The client itself says only "Failed to initialize" and exits 0; the check runs the DDL in PyFlink.
    result = write_init(
        tmp_path, "CREATE TABLE t (a INT) WITH ('connector' = 'datagen');\n\nCREATE VIEW v AS\nSELECT day FROM t;\n"
    )
    assert (result.returncode, result.stderr) == (
        2,
        'error: sql/view.sql line 4: SQL parse failed. Encountered "day" (column 8)\n',
    )
