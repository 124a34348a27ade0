"""Time is UTC epoch milliseconds end to end: under a session time zone with daylight saving
(`table.local-time-zone: America/New_York`, set in the job's `flink:` section), across both of its
2026 changes, every 1-minute window of every key is learned exactly once and reaches the learner,
the predictions and the latest-features topic as its exact UTC end. The cluster's JVMs run in UTC
here, so a result that depended on the JVM's zone instead would differ from the session zone's.

>>> [(w - SPRING_START_MS) // WINDOW_MS for w in window_ends()[:2]]
[1, 2]
>>> len(window_ends())
300
"""

import datetime
import json

import pytest

from scripts import stack
from tests.integration.learner_rows import synthetic_row

WINDOW_MS = 60_000
UTC = datetime.timezone.utc
# The US changes of 2026: 02:00 EST becomes 03:00 EDT at 07:00 UTC on 8 March; 02:00 EDT becomes
# 01:00 EST at 06:00 UTC on 1 November, so 01:00-02:00 local happens twice (05:00-07:00 UTC).
SPRING_START_MS = int(datetime.datetime(2026, 3, 8, 6, 0, tzinfo=UTC).timestamp() * 1000)
AUTUMN_START_MS = int(datetime.datetime(2026, 11, 1, 4, 30, tzinfo=UTC).timestamp() * 1000)
WINDOWS_EACH = 150  # 2.5 hours of 1-minute windows around each change
KEYS = ["a", "b"]


def window_starts() -> list[int]:
    return [start + w * WINDOW_MS for start in (SPRING_START_MS, AUTUMN_START_MS) for w in range(WINDOWS_EACH)]


def window_ends() -> list[int]:
    return [start + WINDOW_MS for start in window_starts()]


@pytest.mark.timeout(420)
def test_every_window_across_both_daylight_saving_changes_is_learned_once_at_its_utc_end(services, flink_job, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"bounded_mode": "latest-offset", "watermark_delay_seconds": 0},
            "window": {"size_seconds": WINDOW_MS // 1000},
            "snapshots": {"policy": "every_window"},
            "flink": {"table.local-time-zone": "America/New_York"},
        },
    )
    events = []
    for w, start in enumerate(window_starts()):
        for k, key in enumerate(KEYS):
            x, y = synthetic_row(k, w)
            # Mid-window, with a millisecond part: any shift of the window or loss of its millis shows.
            events.append({"entity": key, "x1": x["x1_avg"], "x2": x["x2_avg"], "label": y, "ts": start + 30_007})
    stack.produce_json(config["topics.events.name"], events, key_field="entity")
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    stack.wait_for_job_state(job_id, "FINISHED", timeout_s=300)

    predictions = [json.loads(r.value) for r in stack.read_topic(config["topics.predictions.name"], 10**9, 5)]
    latest = {
        json.loads(r.value)["key"]: json.loads(r.value)
        for r in stack.read_topic(config["topics.features.name"], 10**9, 5)
    }
    snapshots = stack.read_snapshots(config)
    dead = stack.read_topic(config["topics.dead_letters.name"], 10**9, 5)

    assert dead == []
    expected = window_ends()
    for key in KEYS:
        # Exactly the UTC window ends, each once: the repeated autumn hour neither merged into the hour
        # before it nor skipped as a replay (a skipped row has no prediction), the spring gap not shifted.
        assert sorted(p["window_end_ms"] for p in predictions if p["model_key"] == key) == expected, key
        assert max(s.n_learned for s in snapshots if s.key == key) == len(expected), key
        assert latest[key]["window_end_ms"] == expected[-1], key
    assert len(predictions) == len(KEYS) * len(expected)
