"""scripts/sql-client.sh: Flink's own SQL client, with the job's sources and views rendered from the
config, runs a query file against a bounded topic on the cluster and prints the feature rows the
job's SQL computes; the job's sinks are not defined.

>>> expected_rows()[:2]
[('a', '2026-01-01 00:00:10.000', '1.0', 'FALSE'), ('a', '2026-01-01 00:00:20.000', '11.0', 'TRUE')]
"""

import datetime
import os
import re
import subprocess

import pytest

from scripts import stack

WINDOW_S = 10
START_MS = int(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).timestamp() * 1000)
KEYS = ["a", "b"]
WINDOWS = 3
QUERY = """
SET 'sql-client.execution.result-mode' = 'tableau';
SHOW TABLES;
SELECT entity, CAST(window_end AS STRING) AS window_end, x1_avg, CAST(label AS STRING) AS label FROM features;
"""


def events() -> list[dict]:
    """Two events per key and window, x1 averaging to 10 w + k + 1; window 1 is labelled true."""
    return [
        {
            "entity": key,
            "x1": 10 * w + k + d,
            "x2": 0.5,
            "label": w == 1,
            "ts": START_MS + w * WINDOW_S * 1000 + 1000 + d,
        }
        for w in range(WINDOWS)
        for k, key in enumerate(KEYS)
        for d in (0, 2)
    ]


def expected_rows() -> list[tuple]:
    end = datetime.datetime(2026, 1, 1)
    return sorted(
        (
            key,
            (end + datetime.timedelta(seconds=(w + 1) * WINDOW_S)).strftime("%Y-%m-%d %H:%M:%S.000"),
            f"{10.0 * w + k + 1}",
            "TRUE" if w == 1 else "FALSE",
        )
        for w in range(WINDOWS)
        for k, key in enumerate(KEYS)
    )


def printed_rows(output: str) -> list[tuple]:
    """The inserted rows of the client's tableau output: `| +I | a | ... |`."""
    return sorted(
        tuple(cell.strip() for cell in line.strip().strip("|").split("|")[1:])
        for line in output.splitlines()
        if line.startswith("| +I")
    )


@pytest.mark.timeout(300)
def test_a_query_file_prints_the_features_of_a_bounded_topic(services, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {
                "startup_mode": "earliest-offset",
                "bounded_mode": "latest-offset",
                "watermark_delay_seconds": 0,
            },
            "window": {"size_seconds": WINDOW_S},
        },
    )
    topic = config["topics.events.name"]
    stack.produce_json(topic, events(), key_field="entity")
    # Without a ts: sql/checked_events.sql keeps it out of the features view (key c prints no row).
    stack.produce_json(topic, [{"entity": "c", "x1": 1.0, "x2": 0.5, "label": True}])
    query = tmp_path / "query.sql"
    query.write_text(QUERY)
    try:
        result = subprocess.run(
            [
                "bash",
                os.path.join(stack.PROJECT_DIR, "scripts", "sql-client.sh"),
                "--config",
                config.source,
                "-f",
                str(query),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
    finally:
        stack.cancel_jobs_named(f"sql-client ({config.source})")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # SHOW TABLES: the sources and views, and no sink (left out without --with-sinks).
    assert set(re.findall(r"(?m)^\|\s+(\w+) \|$", result.stdout)) == {
        "events_raw",
        "parsed_events",
        "checked_events_once",
        "checked_events",
        "events",
        "rejected_events",
        "features",
    }, result.stdout[-4000:]
    assert printed_rows(result.stdout) == expected_rows(), result.stdout[-4000:]
    # The query ran on the session cluster, as a job named after the config, and ended with the topic.
    jobs = [job for job in stack.rest("/jobs/overview")["jobs"] if job["name"] == f"sql-client ({config.source})"]
    assert [job["state"] for job in jobs] == ["FINISHED"]
