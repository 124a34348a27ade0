"""scripts/upgrade.sh's decisions (jobs/upgrade.py) without a cluster: which changes count as changed
SQL, where a partition's re-read starts, and what ts the scan reads from an event."""

import os

from jobs.config import derive_config, load_config
from jobs.upgrade import event_ts, resume_start, sql_fingerprint

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def variant(tmp_path, name, overrides):
    return derive_config(
        load_config(os.path.join(PROJECT_DIR, "conf/job.yaml")), str(tmp_path / name), overrides=overrides
    )


def test_a_resumed_job_and_a_new_hyper_parameter_keep_the_sql_fingerprint(tmp_path):
    base = variant(tmp_path, "base.yaml", {})
    resumed = variant(
        tmp_path,
        "resumed.yaml",
        {
            "source": {
                "startup_mode": "specific-offsets",
                "specific_offsets": "partition:0,offset:12;partition:1,offset:40",
                "replay": {"until_offsets": "0:20,1:50", "from_ms": 15_000},
            }
        },
    )
    new_rate = variant(tmp_path, "rate.yaml", {"model": {"steps": [{"class": "linear_model.LogisticRegression"}]}})
    assert sql_fingerprint(base) == sql_fingerprint(resumed) == sql_fingerprint(new_rate)


def test_changed_sql_a_window_size_or_feature_columns_change_the_sql_fingerprint(tmp_path):
    base = variant(tmp_path, "base.yaml", {})
    features_sql = tmp_path / "features.sql"
    features_sql.write_text(
        open(os.path.join(PROJECT_DIR, "sql/features.sql"))
        .read()
        .replace("  AVG(x2) AS x2_avg,\n", "  AVG(x2) AS x2_avg,\n  MAX(x1) AS x1_max,\n")
    )
    ddl = [str(features_sql) if p.endswith("features.sql") else p for p in base["sql.ddl"]]
    changed = [
        variant(tmp_path, "sql.yaml", {"sql": {"ddl": ddl}}),
        variant(tmp_path, "window.yaml", {"window": {"size_seconds": 5}}),
        variant(tmp_path, "columns.yaml", {"features": {"columns": ["x1_avg"]}}),
    ]
    assert len({sql_fingerprint(base), *map(sql_fingerprint, changed)}) == 4


def test_the_re_read_starts_after_the_last_event_before_the_window_minus_the_delay():
    # 7,200 and 7,400 are within the 1 s delay of the window start 8,000; 6,500 is not: the re-read starts after it.
    tail = [(10, 7_100), (11, 6_500), (12, 7_400), (13, None), (14, 8_100), (15, 7_200), (16, 8_300)]
    assert resume_start(tail, 8_000, 1_000, 17) == 12
    assert resume_start(tail, 8_000, 0, 17) == 16  # 7,200 < 8,000: all before it is older
    assert resume_start(tail[-2:], 9_000, 2_000, 17) is None  # read further back
    assert resume_start([], 9_000, 2_000, 17) == 17  # an empty partition


def test_the_scan_reads_ts_as_the_job_does():
    assert event_ts(b'{"entity": "a", "ts": 1001}', 100) == 1001
    assert [
        event_ts(v, 100)
        for v in (
            None,
            b"",
            b"[1]",
            b'{"ts": "5"}',
            b'{"ts": -1}',
            b'{"ts": true}',
            b'{"ts": 1.5}',
            b'{"ts": 1, "pad": "' + b"x" * 500 + b'"}',
        )
    ] == [None] * 8
