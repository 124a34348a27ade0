"""Delayed labels for windows in which a key has no row, on the real stack (issue #14, item 4).

With `features.label_delay_windows: 1` the row of window t learns with the label of the key's row of
window t + 1. A key with no row there learns, once t + 1 has closed, `features.empty_window_label`, or
without one declared the row is dropped and counted in the learner's Flink counter `pending_rows_dropped`.
"""

import json

import pytest

from scripts import stack
from tests.integration.learner_rows import (
    WINDOW_MS,
    delayed_plain_river,
    latest_by_key,
    per_window_settings,
    synthetic_row,
)

WINDOWS = 40
# Which windows each key has a row in: every other one, two of three, every one.
PATTERNS = {
    "sparse": lambda w: w % 2 == 0,
    "mixed": lambda w: w % 3 != 2,
    "dense-a": lambda w: True,
    "dense-b": lambda w: True,
}
ROWS = {
    key: {w: synthetic_row(k, w) for w in range(WINDOWS) if has_row(w)}
    for k, (key, has_row) in enumerate(PATTERNS.items())
}
# A key with rows after the others' last window moves the watermark on: windows 0 .. 42 close.
CLOCK_WINDOWS = range(WINDOWS, WINDOWS + 4)
CLOSED_WINDOWS = WINDOWS + 3


def event(key: str, w: int, x: dict, y) -> dict:
    return {"entity": key, "x1": x["x1_avg"], "x2": x["x2_avg"], "label": y, "ts": w * WINDOW_MS + 1}


def produce(topic: str) -> None:
    """The keys' rows in window order, then the clock's to every partition: no partition waits for the
    idle timeout to let the watermark on (a partition read a second late under load would turn idle, and
    its events late, with a short one)."""
    rows = sorted(
        ((w, key, x, y) for key, by_window in ROWS.items() for w, (x, y) in by_window.items()), key=lambda row: row[0]
    )
    stack.produce_json(topic, [event(key, w, x, y) for w, key, x, y in rows], key_field="entity")
    for w in CLOCK_WINDOWS:
        stack.produce_to_every_partition(topic, event("clock", w, *synthetic_row(9, w)))


def start(tmp_path, flink_job, name, features):
    config = stack.isolated_config(
        tmp_path / name,
        "conf/job.yaml",
        per_window_settings(features={"label_delay_windows": 1, **features}),
    )
    return config, flink_job("jobs/learner_job.py", "--config", config.source)


def predictions_of(config) -> dict:
    """{(key, window): prediction} of every window that closed, once all are committed."""
    expected = sum(map(len, ROWS.values())) + len(CLOCK_WINDOWS) - 1  # the clock's last window stays open
    records = stack.read_topic(config["topics.predictions.name"], expected, timeout_s=120)
    assert len(records) == expected
    return {
        (p["model_key"], p["window_end_ms"] // WINDOW_MS - 1): p["prediction"]
        for p in map(json.loads, (r.value for r in records))
    }


@pytest.mark.timeout(420)
def test_rows_whose_next_window_is_empty_learn_the_empty_label_or_are_dropped_and_counted(
    services, flink_job, tmp_path
):
    with_label, job_with = start(tmp_path, flink_job, "with", {"empty_window_label": False})
    without, job_without = start(tmp_path, flink_job, "without", {})
    for config in (with_label, without):
        produce(config["topics.events.name"])

    for config, job_id, empty_label in ((with_label, job_with, False), (without, job_without, None)):
        published = predictions_of(config)
        expected = {key: delayed_plain_river(rows, empty_label, CLOSED_WINDOWS) for key, rows in ROWS.items()}
        learning = [key for key, (*_, learned, _) in expected.items() if learned]

        def caught_up():
            latest = latest_by_key(stack.read_snapshots(config))
            return all(key in latest and latest[key].n_learned == expected[key][3] for key in learning)

        stack.wait_until(caught_up, 60, f"every key's last snapshot (empty label {empty_label})")
        latest = latest_by_key(stack.read_snapshots(config))
        for key, (_, metric, predictions, learned, _) in expected.items():
            # Each row was predicted once, by the model plain River has at that point (test, then train).
            assert {w: published[(key, w)] for w in ROWS[key]} == pytest.approx(predictions, abs=1e-9), key
            if learned:
                assert latest[key].n_learned == latest[key].model_version == learned, key
                assert latest[key].metric_value == pytest.approx(metric.get(), abs=1e-9), key
            else:
                assert key not in latest, f"{key} learned nothing, yet has a snapshot"
        if empty_label is not None:
            # Every row learned once: with its next window's label, or the empty window's.
            assert all(expected[key][3] == len(rows) for key, rows in ROWS.items())
        else:
            assert expected["sparse"][3] == 0 and expected["mixed"][3] > 0
            drops = sum(dropped for *_, dropped in expected.values())
            # The rows whose next window has no row of their key (the last window, 39, included).
            assert drops == sum(1 for rows in ROWS.values() for w in rows if w + 1 not in rows)
        drops = 0 if empty_label is not None else drops
        stack.wait_until(
            lambda: stack.job_metrics(job_id, "pending_rows_dropped") == {"pending_rows_dropped": drops},
            60,
            lambda: f"pending_rows_dropped {stack.job_metrics(job_id, 'pending_rows_dropped')} to be {drops}",
        )
    # Dense keys are predicted alike with and without the empty label: their rows all have labels.
    dense = [(key, w) for key in ("dense-a", "dense-b") for w in ROWS[key]]
    with_predictions, without_predictions = predictions_of(with_label), predictions_of(without)
    assert [with_predictions[k] for k in dense] == [without_predictions[k] for k in dense]
