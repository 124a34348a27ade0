"""Train from history, then stream (scripts/backfill.sh): one stream split into a Parquet history and a
live Kafka part that overlaps it by a few windows; after the backfill and the streaming job, every key's
metric, n_learned and predictions are those of one run that streamed everything from Kafka."""

import json
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scripts import stack
from tests.integration.learner_rows import METRIC, MODEL, WINDOW_MS, latest_by_key, synthetic_events
from tests.integration.test_learner_job import run_job

KEYS = [f"k{i}" for i in range(4)]
WINDOWS = 60
HISTORY_END = 30  # windows 0 .. 29 are history
LIVE_START = 25  # the live topic holds windows 25 .. 59: 25 .. 29 again, as a topic kept longer would


def by_window(predictions):
    return {(p["model_key"], p["window_end_ms"]): p["prediction"] for p in predictions if p["model_key"] in KEYS}


@pytest.fixture
def jobs_named():
    """A unique pipeline.name; every job of that name still running at the end of the test is cancelled
    (backfill.sh submits two)."""
    name = f"backfill-{uuid.uuid4().hex[:8]}"
    yield name
    for job in stack.rest("/jobs/overview")["jobs"]:
        if job["name"] == name:
            stack.cancel(job["jid"])


@pytest.mark.timeout(480)
def test_backfill_then_stream_equals_one_stream(services, flink_job, jobs_named, tmp_path):
    events = synthetic_events(KEYS, range(WINDOWS))
    (tmp_path / "reference").mkdir()
    _, reference, reference_snapshots = run_job(tmp_path / "reference", flink_job, events)
    expected = latest_by_key(reference_snapshots)
    assert len(by_window(reference)) == len(KEYS) * WINDOWS

    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            # No partition is taken for idle while the job starts; closers move the watermark at the end.
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "10 min"},
            "window": {"size_seconds": WINDOW_MS // 1000},
            "model": MODEL,
            "metric": METRIC,
            "snapshots": {"policy": "every_window"},
            "flink": {"pipeline.name": jobs_named},
        },
    )
    history = [e for e in events if e["ts"] < HISTORY_END * WINDOW_MS]
    (tmp_path / "history").mkdir()
    pq.write_table(
        pa.table({"payload": [json.dumps(e).encode() for e in history]}), tmp_path / "history" / "events-0.parquet"
    )
    stack.produce_json(config["topics.events.name"], [e for e in events if e["ts"] >= LIVE_START * WINDOW_MS], "entity")
    stack.produce_to_every_partition(
        config["topics.events.name"], {"entity": "closer", "x1": 0.0, "x2": 0.0, "label": False, "ts": 10**6}
    )

    out = stack.script("backfill.sh", "--config", config.source, "--from", str(tmp_path / "history"), timeout=400)
    streaming = out.strip().splitlines()[-1]
    stack.wait_for_job_state(streaming, "RUNNING", timeout_s=60)

    def learned_everything():
        latest = latest_by_key(stack.read_snapshots(config, timeout_s=2))
        return all(key in latest and latest[key].n_learned >= WINDOWS for key in KEYS)

    stack.wait_until(learned_everything, 180, "every key to learn every window")
    # The live topic's rows of windows 25 .. 29, learned from history already, were skipped and counted.
    stack.wait_until(
        lambda: (
            stack.job_metrics(streaming, "replayed_rows").get("replayed_rows") == len(KEYS) * (HISTORY_END - LIVE_START)
        ),
        30,
        "replayed_rows to count the overlap",
    )
    predictions = [json.loads(r.value) for r in stack.read_topic(config["topics.predictions.name"], None, timeout_s=30)]
    ours = [p for p in predictions if p["model_key"] in KEYS]
    assert len(ours) == len(KEYS) * WINDOWS, "a window predicted twice, or not at all"
    assert by_window(ours) == pytest.approx(by_window(reference), abs=1e-12)
    latest = latest_by_key(stack.read_snapshots(config, timeout_s=5))
    for key in KEYS:
        assert (
            (latest[key].n_learned, latest[key].model_version)
            == (expected[key].n_learned, expected[key].model_version)
            == (WINDOWS, WINDOWS)
        )
        assert latest[key].metric_value == pytest.approx(expected[key].metric_value, abs=1e-12)
