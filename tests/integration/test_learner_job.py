"""The learner job on the real stack: Kafka -> SQL windows -> per-key River models -> Kafka.

Each test replays a finite stream (the source is bounded at the topic's end offsets), waits for the
job to finish, and compares what came out with plain River on the same rows.
"""

import json
import os

import pytest
from river import evaluate

from jobs.config import load_config
from scripts import stack
from tests.integration.learner_rows import (
    METRIC,
    MODEL,
    TOPICS,
    WINDOW_MS,
    bananas,
    events_for,
    latest_by_key,
    plain_river,
    synthetic_row,
    three_topics,
)
from tests.unit.models import categorical_model, genre_rows
from udfs.model_spec import build_metric, build_model
from udfs.prediction import class_name
from udfs.safe_pickle import ModelClasses


def edited_ddl(tmp_path, edits: dict) -> list:
    """conf/job.yaml's DDL files, those named in `edits` ({path: [(old, new), ...]}) replaced by edited
    copies in tmp_path/sql/ (the sql/ of a config in tmp_path/conf/), as a user adapts the job by editing sql/."""
    ddl = []
    for path in load_config(os.path.join(stack.PROJECT_DIR, "conf/job.yaml"))["sql.ddl"]:
        if path in edits:
            with open(os.path.join(stack.PROJECT_DIR, path)) as f:
                sql = f.read()
            for old, new in edits[path]:
                assert old in sql, f"{path} no longer has {old!r}"
                sql = sql.replace(old, new)
            path = str(tmp_path / path)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(sql)
        ddl.append(path)
    return ddl


def refused_at_submit(config, setting: str) -> list:
    """The lines naming `setting` of the error of a submit that must fail before any job starts."""
    jobs_before = stack.rest("/jobs/overview")["jobs"]
    with pytest.raises(RuntimeError) as failure:
        stack.script("submit.sh", "jobs/learner_job.py", "--config", config.source)
    assert stack.rest("/jobs/overview")["jobs"] == jobs_before
    return [line for line in str(failure.value).splitlines() if setting in line]


def run_job(tmp_path, flink_job, events, overrides=None):
    """Produce the events, run the job to the end of them; returns (config, predictions, snapshots)."""
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"bounded_mode": "latest-offset", "watermark_delay_seconds": 0},
            "window": {"size_seconds": WINDOW_MS // 1000},
            "model": MODEL,
            "metric": METRIC,
            "snapshots": {"policy": "every_window"},
            **(overrides or {}),
        },
    )
    stack.produce_json(config["topics.events.name"], events, key_field="entity")
    job_id = flink_job("jobs/learner_job.py", "--config", config.source)
    stack.wait_for_job_state(job_id, "FINISHED", timeout_s=240)
    predictions = [json.loads(r.value) for r in stack.read_topic(config["topics.predictions.name"], 10**9, timeout_s=5)]
    snapshots = stack.read_snapshots(config)
    return config, predictions, snapshots


@pytest.mark.timeout(300)
def test_one_key_matches_progressive_val_score(services, flink_job, tmp_path):
    rows = bananas(600)
    _, predictions, snapshots = run_job(tmp_path, flink_job, events_for({"only": rows}))

    expected = evaluate.progressive_val_score(rows, build_model(MODEL), build_metric(METRIC)).get()
    final = latest_by_key(snapshots)["only"]
    assert len(predictions) == len(rows)
    assert final.n_learned == final.model_version == len(rows)
    assert final.metric_name == "LogLoss"
    assert final.metric_value == pytest.approx(expected, abs=1e-9)


@pytest.mark.timeout(300)
def test_many_keys_match_one_plain_river_model_per_key(services, flink_job, tmp_path):
    rows = bananas(900)
    by_key = {f"key-{k}": rows[k::3] for k in range(3)}
    _, predictions, snapshots = run_job(tmp_path, flink_job, events_for(by_key))

    latest = latest_by_key(snapshots)
    assert set(latest) == set(by_key)
    for key, key_rows in by_key.items():
        model, metric = plain_river(key_rows)
        assert latest[key].n_learned == len(key_rows)
        assert latest[key].metric_value == pytest.approx(metric.get(), abs=1e-9)
    assert len(predictions) == len(rows)


@pytest.mark.timeout(300)
def test_many_keys_in_each_batch_over_shards_and_two_subtasks_match_plain_river(services, flink_job, tmp_path):
    # 40 keys over 3 shards: each call into Python carries about 13 keys' rows of one window, and at
    # parallelism 2 the shards are split between two learner subtasks.
    rows = bananas(2000)
    by_key = {f"key-{k}": rows[k::40] for k in range(40)}
    _, predictions, snapshots = run_job(
        tmp_path,
        flink_job,
        events_for(by_key),
        {
            "learner": {"shards": 3, "state_cache_keys": 10},  # a cache smaller than the keys: state reads too
            "flink": {"parallelism.default": 2},
        },
    )

    latest = latest_by_key(snapshots)
    assert set(latest) == set(by_key)
    for key, key_rows in by_key.items():
        model, metric = plain_river(key_rows)
        assert latest[key].n_learned == latest[key].model_version == len(key_rows)
        assert latest[key].metric_value == pytest.approx(metric.get(), abs=1e-9)
    assert sorted((p["model_key"], p["window_end_ms"]) for p in predictions) == sorted(
        (key, (i + 1) * WINDOW_MS) for key, key_rows in by_key.items() for i in range(len(key_rows))
    )


@pytest.mark.timeout(300)
def test_snapshots_decode_and_predict_what_the_job_predicted(services, flink_job, tmp_path):
    rows = bananas(200)
    by_key = {"a": rows[0::2], "b": rows[1::2]}
    _, predictions, snapshots = run_job(tmp_path, flink_job, events_for(by_key))

    for key, key_rows in by_key.items():
        versions = [s.model_version for s in snapshots if s.key == key]
        assert versions == sorted(set(versions)) and versions[0] == 1, "versions must strictly increase"
        assert versions[-1] == len(key_rows)
    # The prediction of window i was made by model version i, before it learned row i.
    models = {(s.key, s.model_version): s.model() for s in snapshots}
    features = {
        (key, i * WINDOW_MS + WINDOW_MS): x for key, key_rows in by_key.items() for i, (x, _) in enumerate(key_rows)
    }
    checked = 0
    for p in predictions:
        model = models.get((p["model_key"], p["model_version"]))
        if model is not None:
            x = features[(p["model_key"], p["window_end_ms"])]
            assert model.predict_proba_one(x)[True] == p["prediction"]
            checked += 1
    assert checked == len(rows) - len(by_key)  # every prediction but each key's first (version 0)


@pytest.mark.timeout(300)
def test_delayed_labels_learn_each_row_once_with_its_own_label(services, flink_job, tmp_path):
    delay = 3
    rows = bananas(300)
    # The label of window t arrives with the events of window t + delay.
    events = []
    for t in range(len(rows) + delay):
        x = rows[t][0] if t < len(rows) else {"x1_avg": 0.0, "x2_avg": 0.0}
        label = rows[t - delay][1] if t >= delay else None
        events.append({"entity": "late", "x1": x["x1_avg"], "x2": x["x2_avg"], "label": label, "ts": t * WINDOW_MS + 1})
    _, predictions, snapshots = run_job(tmp_path, flink_job, events, {"features": {"label_delay_windows": delay}})

    model, metric, pending = build_model(MODEL), build_metric(METRIC), []
    for t in range(len(events)):
        x = rows[t][0] if t < len(rows) else {"x1_avg": 0.0, "x2_avg": 0.0}
        pending.append((x, model.predict_proba_one(x)))
        if t >= delay:
            x_old, y_pred_old = pending.pop(0)
            metric.update(rows[t - delay][1], y_pred_old)
            model.learn_one(x_old, rows[t - delay][1])
    final = latest_by_key(snapshots)["late"]
    assert final.n_learned == len(rows)
    assert final.metric_value == pytest.approx(metric.get(), abs=1e-9)
    assert len(predictions) == len(events)


@pytest.mark.timeout(300)
def test_window_size_and_a_new_feature_column_need_no_python_change(services, flink_job, tmp_path):
    ddl = edited_ddl(
        tmp_path, {"sql/features.sql": [("  AVG(x2) AS x2_avg,\n", "  AVG(x2) AS x2_avg,\n  MAX(x1) AS x1_max,\n")]}
    )
    rows = bananas(200)
    _, predictions, snapshots = run_job(
        tmp_path,
        flink_job,
        events_for({"wide": rows}, per_window=2),
        {
            "window": {"size_seconds": 2},
            "features": {"columns": ["x1_avg", "x2_avg", "x1_max"]},
            "sql": {"ddl": ddl},
        },
    )
    final = latest_by_key(snapshots)["wide"]
    # Two events per 1 s of event time and 2 s windows: four events per window.
    assert final.n_learned == len(rows) // 4
    assert len(predictions) == len(rows) // 4
    assert set(final.model()["StandardScaler"].means) == {"x1_avg", "x2_avg", "x1_max"}


TREE = {"steps": [{"class": "tree.HoeffdingTreeClassifier", "params": {"grace_period": 50}}]}
# The event's label as text (one of TOPICS) through the checks, and a window's label its (one) event's.
TOPIC_LABELS = {
    "sql/checked_events.sql": [
        (
            "WHEN label_text NOT IN ('true', 'false') THEN 'label is not a boolean'",
            "WHEN label_text NOT IN ('fiction', 'science', 'history') THEN 'label is not a topic'",
        ),
        ("label_text = 'true' AS label", "label_text AS label"),
    ],
    "sql/features.sql": [("MAX(CAST(label AS INT)) = 1 AS label", "MAX(label) AS label")],
}


@pytest.mark.timeout(300)
def test_a_multiclass_tree_on_string_labels_matches_river_and_is_served_with_its_probabilities(
    services, flink_job, replicas, tmp_path
):
    by_key = {"shelf-a": three_topics(300, seed=1), "shelf-b": three_topics(300, seed=2)}
    metric = {"class": "metrics.LogLoss"}
    config, predictions, snapshots = run_job(
        tmp_path,
        flink_job,
        events_for(by_key),
        {"model": TREE, "metric": metric, "sql": {"ddl": edited_ddl(tmp_path, TOPIC_LABELS)}},
    )

    latest = latest_by_key(snapshots)
    published = {(p["model_key"], p["window_end_ms"]): p for p in predictions}
    assert len(published) == len(predictions) == sum(map(len, by_key.values()))
    for key, rows in by_key.items():
        expected = evaluate.progressive_val_score(rows, build_model(TREE), build_metric(metric)).get()
        assert (latest[key].n_learned, latest[key].metric_name) == (len(rows), "LogLoss")
        assert latest[key].metric_value == pytest.approx(expected, abs=1e-9)
        # Each row's published class and probabilities are plain River's, test-then-train.
        model = build_model(TREE)
        for i, (x, y) in enumerate(rows):
            p, river_says = published[(key, (i + 1) * WINDOW_MS)], model.predict_proba_one(x)
            if not river_says:  # the first row: the tree knows no class yet
                assert (p["prediction"], p["predicted"], p["probabilities"]) == (None, None, None)
            else:
                assert p["probabilities"] == pytest.approx(river_says, abs=1e-12)
                assert p["predicted"] == model.predict_one(x) and p["prediction"] == p["probabilities"][p["predicted"]]
            model.learn_one(x, y)
    assert {p["predicted"] for p in predictions} == {None, *TOPICS}

    # A replica serves the trees (their payloads pass the allow-list) with their class probabilities.
    replica = replicas(config, 18401)
    replica.wait_ready()
    stack.wait_until(
        lambda: all(
            replica.http("GET", f"/models/{key}")[1].get("model_version") == len(rows) for key, rows in by_key.items()
        ),
        60,
        "the replica to serve every key's last version",
    )
    probe = {"x1_avg": 0.4, "x2_avg": 0.6}
    for key in by_key:
        status, answer = replica.http("POST", "/predict", {"key": key, "features": probe})
        final = latest[key].model().predict_proba_one(probe)
        assert status == 200 and answer["probabilities"] == pytest.approx(final, abs=1e-12)
        assert answer["predicted"] == max(final, key=final.get)
    science = {key: latest[key].model().predict_proba_one(rows[-1][0])["science"] for key, rows in by_key.items()}
    status, ranked = replica.http("POST", "/recommend", {"class": "science", "candidates": list(by_key)})
    assert status == 200
    expected_ranking = sorted(science, key=science.get, reverse=True)
    assert [r["key"] for r in ranked["ranking"]] == expected_ranking
    assert [r["score"] for r in ranked["ranking"]] == pytest.approx([science[k] for k in expected_ranking], abs=1e-12)


TYPED_FEATURES = ("x1_avg", "x2_avg", "genre", "x1_positive")
CATEGORICAL = categorical_model(["x1_avg", "x2_avg"], ["genre", "x1_positive"])
# The event's genre (a string) through the checks, and two more feature columns: the window's genre and
# whether its x1 is positive (a BOOLEAN).
GENRE_FEATURES = {
    "sql/checked_events.sql": [
        (
            "JSON_FIELDS(payload, 'entity', 'ts', 'x1', 'x2', 'label')",
            "JSON_FIELDS(payload, 'entity', 'ts', 'x1', 'x2', 'label', 'genre')",
        ),
        ("  fields[5] AS label_text\n", "  fields[5] AS label_text,\n  fields[6] AS genre\n"),
        (
            "    WHEN label_text NOT IN ('true', 'false') THEN 'label is not a boolean'\n",
            "    WHEN label_text NOT IN ('true', 'false') THEN 'label is not a boolean'\n"
            "    WHEN genre IS NULL THEN 'genre missing'\n",
        ),
        (
            "SELECT entity, x1, x2, label_text = 'true' AS label",
            "SELECT entity, x1, x2, genre, label_text = 'true' AS label",
        ),
    ],
    "sql/features.sql": [
        ("  AVG(x2) AS x2_avg,\n", "  AVG(x2) AS x2_avg,\n  MAX(genre) AS genre,\n  MAX(x1) > 0 AS x1_positive,\n")
    ],
}


def probabilities_of(model, x) -> dict:
    return {class_name(c): p for c, p in model.predict_proba_one(x).items()}


@pytest.mark.timeout(300)
def test_a_categorical_model_learns_strings_and_booleans_as_they_are_and_is_served_typed(
    services, flink_job, replicas, tmp_path
):
    by_key = {
        "shelf-a": genre_rows(200, seed=11, names=TYPED_FEATURES),
        "shelf-b": genre_rows(200, seed=12, names=TYPED_FEATURES),
    }
    config, predictions, snapshots = run_job(
        tmp_path,
        flink_job,
        events_for(by_key, fields=["genre"]),
        {
            "model": CATEGORICAL,
            "features": {"columns": list(TYPED_FEATURES)},
            "sql": {"ddl": edited_ddl(tmp_path, GENRE_FEATURES)},
        },
    )

    latest = latest_by_key(snapshots)
    published = {(p["model_key"], p["window_end_ms"]): p for p in predictions}
    assert len(published) == sum(map(len, by_key.values()))
    for key, rows in by_key.items():
        # The job publishes each feature's type, from the feature view's SQL column types.
        assert latest[key].feature_types == {
            "x1_avg": "number",
            "x2_avg": "number",
            "genre": "string",
            "x1_positive": "boolean",
        }
        # Test-then-train exactly as plain River on the same typed rows: the strings and booleans reached
        # the model as they are (the encoder's categories are the strings and the booleans themselves).
        model, metric = build_model(CATEGORICAL), build_metric(METRIC)
        for i, (x, y) in enumerate(rows):
            said = model.predict_proba_one(x)
            assert published[(key, (i + 1) * WINDOW_MS)]["prediction"] == pytest.approx(said[True], abs=1e-12)
            metric.update(y, said)
            model.learn_one(x, y)
        assert (latest[key].n_learned, latest[key].metric_value) == (len(rows), pytest.approx(metric.get(), abs=1e-9))
        served = latest[key].model(ModelClasses.of([build_model(CATEGORICAL)]))
        encoder = list(served["TransformerUnion"].transformers.values())[0]["OneHotEncoder"]
        assert dict(encoder.values) == {"genre": {"fiction", "science", "history"}, "x1_positive": {True, False}}
        assert {type(v) for v in encoder.values["x1_positive"]} == {bool}

    replica = replicas(config, 18402)
    replica.wait_ready()
    stack.wait_until(
        lambda: all(
            replica.http("GET", f"/models/{key}")[1].get("model_version") == len(rows) for key, rows in by_key.items()
        ),
        60,
        "the replica to serve every key's last version",
    )
    # The job writes a key's newest row of each watermark only (java/realtime_learning/LatestPerKey.java):
    # its last window's features, whatever else one watermark closed with it.
    stack.wait_until(
        lambda: all(
            replica.http("GET", f"/features/{key}")[1].get("window_end_ms") == len(rows) * WINDOW_MS
            for key, rows in by_key.items()
        ),
        30,
        "the replica to hold every key's last window's features",
    )
    models = {key: latest[key].model(ModelClasses.of([build_model(CATEGORICAL)])) for key in by_key}
    probe = {"x1_avg": 0.4, "x2_avg": -0.2, "genre": "science", "x1_positive": True}
    for key, rows in by_key.items():
        status, answer = replica.http("POST", "/predict", {"key": key, "features": probe})
        assert status == 200 and answer["probabilities"] == pytest.approx(
            probabilities_of(models[key], probe), abs=1e-12
        )
        # By key alone: the stored features, read back from the features topic with their types.
        last = rows[-1][0]
        status, answer = replica.http("POST", "/predict", {"key": key})
        assert status == 200 and answer["prediction"] == pytest.approx(
            models[key].predict_proba_one(last)[True], abs=1e-12
        )
        assert replica.http("GET", f"/features/{key}")[1]["features"] == last
    # A value of the wrong type is a 400 naming the field and the type it needs.
    assert replica.http("POST", "/predict", {"key": "shelf-a", "features": {**probe, "genre": 3}}) == (
        400,
        {"error": "feature 'genre' must be a string, got int"},
    )
    assert replica.http("POST", "/predict", {"key": "shelf-a", "features": {**probe, "x1_positive": "yes"}}) == (
        400,
        {"error": "feature 'x1_positive' must be a boolean (true or false), got str"},
    )
    assert replica.http("POST", "/predict", {"key": "shelf-a", "features": {**probe, "x2_avg": "low"}}) == (
        400,
        {"error": "feature 'x2_avg' must be a number, got str"},
    )

    # /recommend ranks the keys by their models on their stored (typed) features.
    scores = {key: models[key].predict_proba_one(rows[-1][0])[True] for key, rows in by_key.items()}
    status, ranked = replica.http("POST", "/recommend", {"candidates": list(by_key)})
    assert status == 200 and [r["key"] for r in ranked["ranking"]] == sorted(scores, key=scores.get, reverse=True)
    assert [r["score"] for r in ranked["ranking"]] == pytest.approx(sorted(scores.values(), reverse=True), abs=1e-12)

    # The Open Inference Protocol: typed input tensors, and the class and probabilities as /predict has them.
    status, meta = replica.http("GET", "/v2/models/shelf-a")
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("x1_avg", "FP64"),
        ("x2_avg", "FP64"),
        ("genre", "BYTES"),
        ("x1_positive", "BOOL"),
    ]
    datatypes = {"x1_avg": "FP64", "x2_avg": "FP64", "genre": "BYTES", "x1_positive": "BOOL"}
    status, inferred = replica.http(
        "POST",
        "/v2/models/shelf-a/infer",
        {"inputs": [{"name": n, "shape": [1], "datatype": datatypes[n], "data": [probe[n]]} for n in TYPED_FEATURES]},
    )
    outputs = {o["name"]: o for o in inferred["outputs"]}
    said = probabilities_of(models["shelf-a"], probe)
    assert status == 200 and outputs["probabilities"]["parameters"] == {"classes": ["false", "true"]}
    assert outputs["probabilities"]["data"] == pytest.approx([said["false"], said["true"]], abs=1e-12)
    assert outputs["predicted"]["data"] == [max(said, key=said.get)]


def test_a_label_type_the_model_cannot_learn_is_refused_at_submit(services, tmp_path):
    # sql/features.sql's label is BOOLEAN: a regressor would learn True as 1.0, a mistake in the config.
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "model": {"steps": [{"class": "linear_model.LinearRegression"}]},
            "metric": {"class": "metrics.MAE"},
        },
    )
    # One line names the file, the setting, the column's type and what the model learns.
    assert refused_at_submit(config, "features.label") == [
        f"error: {os.path.basename(config.source)}: 'features.label' (column label of view features) "
        "is of type BOOLEAN, but LinearRegression is a regressor, which learns numbers (an integer type, "
        "FLOAT or DOUBLE; CAST a DECIMAL AS DOUBLE)"
    ]


def test_a_feature_column_of_a_type_river_cannot_learn_is_refused_at_submit(services, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/job.yaml", {"features": {"columns": ["x1_avg", "window_end"]}})
    assert refused_at_submit(config, "features.columns") == [
        f"error: {os.path.basename(config.source)}: 'features.columns' (column window_end of view features) "
        "is of type TIMESTAMP(3), which River cannot learn as is: features are numbers, integers, strings or booleans"
    ]


@pytest.mark.timeout(300)
def test_every_seconds_policy_publishes_from_processing_time_timers(services, flink_job, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "1 s"},
            "window": {"size_seconds": 1},
            "snapshots": {"policy": "every_seconds", "every_seconds": 1, "every_n_updates": 10**6},
        },
    )
    flink_job("jobs/learner_job.py", "--config", config.source)
    rows = bananas(40)
    events = events_for({"timed": rows}) + [{"entity": "closer", "x1": 0, "x2": 0, "label": False, "ts": 10**6}]
    stack.produce_json(config["topics.events.name"], events, key_field="entity")
    # The count policy would never publish here; only the 1 s timer can.
    snapshot = stack.read_snapshots(config, expected=1, timeout_s=60)[0]
    assert snapshot.key == "timed"
    assert 1 <= snapshot.n_learned <= len(rows)


@pytest.mark.timeout(300)
def test_a_key_short_of_n_updates_is_published_within_the_max_wait(services, flink_job, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "source": {"watermark_delay_seconds": 0, "idle_timeout": "1 s"},
            "window": {"size_seconds": 1},
            "snapshots": {"policy": "every_n_updates", "every_n_updates": 10, "max_wait_seconds": 1},
        },
    )
    flink_job("jobs/learner_job.py", "--config", config.source)
    rows = bananas(23)
    events = events_for({"busy": rows}) + events_for({"quiet": rows[:3]})
    events.append({"entity": "closer", "x1": 0, "x2": 0, "label": False, "ts": 10**6})
    stack.produce_json(config["topics.events.name"], sorted(events, key=lambda e: e["ts"]), key_field="entity")
    # busy: versions 10 and 20 by count, 23 by the timer; quiet (3 rows) by the timer only. (The closer's
    # own window never closes.) Reading for one record more shows that nothing else is published.
    published = sorted((s.key, s.n_learned) for s in stack.read_snapshots(config, expected=5, timeout_s=40))
    assert published == [("busy", 10), ("busy", 20), ("busy", 23), ("quiet", 3)]


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "edit, reported",
    [
        # A reserved word as a column name: Flink's parser rejects it.
        (
            ("  AVG(x2) AS x2_avg,\n", "  AVG(x2) AS day,\n"),
            'sql/features.sql line 9: SQL parse failed. Encountered "day" (column 14)',
        ),
        # A column the events view does not have: Flink's validator rejects it.
        (
            ("  AVG(x2) AS x2_avg,\n", "  AVG(x3) AS x2_avg,\n"),
            "sql/features.sql line 9: Column 'x3' not found in any table (column 7)",
        ),
    ],
)
def test_a_ddl_statement_flink_rejects_is_named_by_file_and_line_before_any_job_starts(
    services, tmp_path, edit, reported
):
    config = stack.isolated_config(
        tmp_path, "conf/job.yaml", {"sql": {"ddl": edited_ddl(tmp_path, {"sql/features.sql": [edit]})}}
    )
    jobs_before = stack.rest("/jobs/overview")["jobs"]
    with pytest.raises(RuntimeError) as failure:
        stack.script("submit.sh", "jobs/learner_job.py", "--config", config.source)
    assert [line for line in str(failure.value).splitlines() if "features.sql" in line] == [f"error: {reported}"]
    assert "Py4JJavaError" not in str(failure.value)
    assert stack.rest("/jobs/overview")["jobs"] == jobs_before


def test_a_bad_model_spec_fails_at_submit_time(services, tmp_path):
    config = stack.isolated_config(
        tmp_path,
        "conf/job.yaml",
        {
            "model": {"steps": [{"class": "linear_model.LogisticRegresion"}]},
        },
    )
    assert any(
        "model.steps[0].class: unknown River class 'linear_model.LogisticRegresion'" in line
        for line in refused_at_submit(config, "model.steps[0]")
    )


@pytest.mark.timeout(400)
def test_a_job_started_without_state_continues_each_key_from_its_newest_snapshot(services, flink_job, tmp_path):
    # The first job learns the first 60 windows of each key; a second job, started afresh (no savepoint)
    # with learner.bootstrap: snapshots, re-reads the topic from the start after 40 more windows.
    rows = bananas(300)
    by_key = {"a": rows[0::3], "b": rows[1::3], "c": rows[2::3]}
    first = {key: key_rows[:60] for key, key_rows in by_key.items()}
    config, _, first_snapshots = run_job(tmp_path, flink_job, events_for(first))
    rest = [e for e in events_for(by_key) if e["ts"] > 60 * WINDOW_MS]
    stack.produce_json(config["topics.events.name"], rest, key_field="entity")
    second = stack.write_config(
        config,
        tmp_path / "second.yaml",
        {
            "source": {"startup_mode": "earliest-offset", "group_id": config["source.group_id"] + "-second"},
            "learner": {"bootstrap": "snapshots"},
            "sinks": {"transactional_id_prefix": config["sinks.transactional_id_prefix"] + "-second"},
        },
    )
    job_id = flink_job("jobs/learner_job.py", "--config", second.source)
    stack.wait_for_job_state(job_id, "FINISHED", timeout_s=240)
    snapshots = stack.read_snapshots(config)

    assert {s.key: s.model_version for s in first_snapshots if s.model_version == 60}.keys() == set(by_key)
    for key, key_rows in by_key.items():
        versions = [s.model_version for s in snapshots if s.key == key]
        assert versions == list(range(1, len(key_rows) + 1)), f"{key}: versions go on from the first job's"
        final = latest_by_key(snapshots)[key]
        assert final.n_learned == len(key_rows)
        model, _ = plain_river(key_rows)
        probe = {"x1_avg": 0.3, "x2_avg": -0.7}
        assert final.model().predict_proba_one(probe)[True] == pytest.approx(
            model.predict_proba_one(probe)[True], abs=1e-12
        )


@pytest.mark.timeout(400)
def test_the_global_prior_is_per_shard_state_the_same_at_parallelism_1_and_2(services, flink_job, tmp_path):
    # 24 keys, key k joining at window 2k: every new key starts from its shard's prior, which learned the
    # shard's earlier rows in whatever order they arrived, from one or two upstream subtasks.
    keys = [f"key-{k:02d}" for k in range(24)]
    events = sorted(
        (
            {"entity": key, "x1": x["x1_avg"], "x2": x["x2_avg"], "label": y, "ts": w * WINDOW_MS + 1}
            for k, key in enumerate(keys)
            for w in range(2 * k, 60)
            for x, y in [synthetic_row(k, w)]
        ),
        key=lambda e: e["ts"],
    )
    runs = {}
    for parallelism in (1, 2):
        _, predictions, _ = run_job(
            tmp_path / f"p{parallelism}",
            flink_job,
            events,
            {
                "safety": {"cold_start": {"prior": "global"}},
                "flink": {"parallelism.default": parallelism},
            },
        )
        runs[parallelism] = {(p["model_key"], p["window_end_ms"]): p["prediction"] for p in predictions}
    assert len(runs[1]) == len(events)
    assert runs[2] == runs[1]
    # The prior mattered: a key's first prediction is its shard prior's, not an untrained model's 0.5.
    firsts = [runs[1][(key, (2 * k + 1) * WINDOW_MS)] for k, key in enumerate(keys) if k > 4]
    assert all(p != 0.5 for p in firsts), firsts
