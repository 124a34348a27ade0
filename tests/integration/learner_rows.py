"""Feature rows for the learner job's tests, the events that make them, and what plain River learns from them.

One event per key and window makes one feature row: its window's x1_avg and x2_avg are the event's
x1 and x2 (sql/features.sql), so plain River on the rows is what the job must reproduce per key.

>>> events_for({"a": bananas(2)})[1]["ts"]
1001
>>> plain_river(bananas(3))[0]["StandardScaler"].counts["x1_avg"]
3
>>> synthetic_events(["a", "b"], range(2))[3]["ts"]
1001
>>> sorted({y for _, y in three_topics(300, seed=1)})
['fiction', 'history', 'science']
>>> rows = {0: ({"x1_avg": 0.0, "x2_avg": 1.0}, True), 2: ({"x1_avg": 1.0, "x2_avg": 0.0}, True)}
>>> [delayed_plain_river(rows, empty_label=label, closed_windows=4)[3:] for label in (False, None)]
[(2, 0), (0, 2)]
"""

from river import datasets

from tests.unit.models import SGD_MODEL as MODEL
from udfs.model_spec import build_metric, build_model

WINDOW_MS = 1000
METRIC = {"class": "metrics.LogLoss"}


def per_window_settings(**overrides) -> dict:
    """conf/job.yaml overrides of the tests that learn these rows window by window: `WINDOW_MS` windows,
    `MODEL` and `METRIC`, no watermark delay, a snapshot per window, and partitions never idle (the
    tests send every window's events to every partition: one read late on a busy machine must hold the
    watermark back, not be skipped, or its rows would come too late); `overrides` added.

    >>> sorted(per_window_settings(flink={"parallelism.default": 2}))
    ['flink', 'metric', 'model', 'snapshots', 'source', 'window']
    """
    return {
        "source": {"watermark_delay_seconds": 0, "idle_timeout": "60 s"},
        "window": {"size_seconds": WINDOW_MS // 1000},
        "model": MODEL,
        "metric": METRIC,
        "snapshots": {"policy": "every_window"},
        **overrides,
    }


def bananas(n):
    """(features, label) of the first n Bananas rows, named as the feature view names them."""
    return [({"x1_avg": x["1"], "x2_avg": x["2"]}, y) for x, y in datasets.Bananas().take(n)]


# The classes of the multiclass rows.
TOPICS = ("fiction", "science", "history")


def three_topics(n, seed):
    """n rows of a seeded 3-class stream (River's RandomRBF), its classes named by TOPICS; with
    seed_model 42 a Hoeffding tree comes to predict each of the three."""
    stream = datasets.synth.RandomRBF(seed_model=42, seed_sample=seed, n_classes=3, n_features=2, n_centroids=6)
    return [({"x1_avg": x[0], "x2_avg": x[1]}, TOPICS[y]) for x, y in stream.take(n)]


def events_for(rows_by_key, per_window=1, fields=()):
    """One event per key and window (or `per_window` events sharing a window), in event-time order; the
    features named in `fields` are carried into the event as they are (a `genre` string, say)."""
    events = []
    for key, rows in rows_by_key.items():
        for i, (x, y) in enumerate(rows):
            events.append(
                {
                    "entity": key,
                    "x1": x["x1_avg"],
                    "x2": x["x2_avg"],
                    "label": y,
                    "ts": (i // per_window) * WINDOW_MS + 1,
                    **{name: x[name] for name in fields},
                }
            )
    return sorted(events, key=lambda e: e["ts"])


def synthetic_row(k: int, w: int) -> tuple[dict, bool]:
    """Key number k's feature row in window w, for streams of any length: deterministic, different
    per key, both labels."""
    x1, x2 = ((w * 7 + k) % 13) / 4.0 - 1.5, ((w * 3 + k * 5) % 17) / 8.0
    return {"x1_avg": x1, "x2_avg": x2}, (x1 + x2 + ((w + k) % 5) * 0.3) > 1.2


def synthetic_events(keys: list, windows) -> list[dict]:
    """The events (one per key and window) whose feature rows are synthetic_row(k, w) of keys[k]."""
    events = []
    for w in windows:
        for k, key in enumerate(keys):
            x, y = synthetic_row(k, w)
            events.append({"entity": key, "x1": x["x1_avg"], "x2": x["x2_avg"], "label": y, "ts": w * WINDOW_MS + 1})
    return events


def plain_river(rows):
    """The model and progressive metric of plain River, test-then-train on one key's rows."""
    model, metric = build_model(MODEL), build_metric(METRIC)
    for x, y in rows:
        metric.update(y, model.predict_proba_one(x))
        model.learn_one(x, y)
    return model, metric


def latest_by_key(snapshots):
    """The newest snapshot of each key."""
    latest = {}
    for s in snapshots:
        if s.key not in latest or s.model_version > latest[s.key].model_version:
            latest[s.key] = s
    return latest


def delayed_plain_river(rows_by_window: dict, empty_label, closed_windows: int):
    """Plain River on one key's rows {window: (x, y)} with a one-window label delay, as the job learns
    them once windows 0 .. closed_windows - 1 have closed: the row of window w is predicted in w and
    learned in w + 1, with the label of the key's row there (after that row is predicted), or, when
    w + 1 closes without a row of the key, with `empty_label` (None: dropped).
    Returns (model, metric, {window: prediction of True}, rows learned, rows dropped)."""
    model, metric, pending, predictions = build_model(MODEL), build_metric(METRIC), {}, {}
    learned = dropped = 0

    def learn(w, y):
        nonlocal learned
        x, y_pred = pending.pop(w)
        metric.update(y, y_pred)
        model.learn_one(x, y)
        learned += 1

    for w in range(closed_windows):
        if w in rows_by_window:
            x, y = rows_by_window[w]
            y_pred = model.predict_proba_one(x)
            predictions[w] = y_pred.get(True, 0.0)
            if w - 1 in pending:
                learn(w - 1, y)
            pending[w] = (x, y_pred)
        if w - 1 in pending:  # window w closed without a row of the key
            if empty_label is None:
                del pending[w - 1]
                dropped += 1
            else:
                learn(w - 1, empty_label)
    return model, metric, predictions, learned, dropped
