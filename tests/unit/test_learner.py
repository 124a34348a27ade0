"""The learner's logic without Flink: test-then-train, delayed labels, snapshot policies."""

import math
import pickle
import time

import pytest
from river import datasets, evaluate

from jobs.config import Config, ConfigError
from tests.unit.models import KEYRING, MODEL, SIGNING, categorical_model, genre_rows
from udfs.empty_windows import label_value_error
from udfs.envelope import decode
from udfs.learner import STATE_SCHEMA_VERSION, Learner, LearnerSettings, SafetySettings, StateSchemaError, migrate
from udfs.model_spec import ModelSpecError, build_metric, build_model
from udfs.quality import QualitySettings


def settings(**changes):
    base = dict(model=MODEL, metric={"class": "metrics.LogLoss"}, feature_names=("1", "2"), window_ms=1000)
    return LearnerSettings(**{**base, **changes})


def test_process_is_progressive_validation():
    rows = list(datasets.Bananas().take(300))
    learner = Learner(settings(), KEYRING)
    state = learner.new_state()
    for i, (x, y) in enumerate(rows):
        prediction = learner.process(state, x, y, window_end_ms=(i + 1) * 1000).prediction
        assert prediction.model_version == i
    expected = evaluate.progressive_val_score(rows, build_model(MODEL), build_metric({"class": "metrics.LogLoss"}))
    assert state.metric.get() == pytest.approx(expected.get(), abs=1e-12)
    assert (state.n_learned, state.model_version, state.last_window_end_ms) == (300, 300, 300_000)


def test_a_new_keys_model_learns_exactly_as_one_built_from_the_spec_and_pickles_as_river_does():
    rows = list(datasets.Bananas().take(200))
    learner, built = Learner(settings(), KEYRING), build_model(MODEL)
    model = learner.new_model()
    for x, y in rows:
        assert model.predict_proba_one(x) == built.predict_proba_one(x)
        model.learn_one(x, y)
        built.learn_one(x, y)
    # Its state and snapshot pickles are River's own, which other releases and the replicas read.
    assert b"prototypes" not in pickle.dumps(model)
    assert pickle.loads(pickle.dumps(model)).predict_proba_one(rows[0][0]) == built.predict_proba_one(rows[0][0])


def test_delayed_label_learns_the_row_it_belongs_to():
    learner = Learner(settings(label_delay_windows=2), KEYRING)
    state = learner.new_state()
    rows = list(datasets.Bananas().take(10))
    for t, (x, _) in enumerate(rows):
        label = rows[t - 2][1] if t >= 2 else None
        learner.process(state, x, label, window_end_ms=(t + 1) * 1000)
    assert state.n_learned == 8
    assert sorted(state.pending) == [9000, 10000]


def test_rows_waiting_too_long_for_a_label_are_dropped_and_counted():
    learner = Learner(settings(label_delay_windows=5, max_pending_windows=3), KEYRING)
    state = learner.new_state()
    for t in range(10):
        learner.process(state, {"1": 0.0, "2": 1.0}, None, window_end_ms=(t + 1) * 1000)
    assert len(state.pending) == 3 and state.pending_dropped == 7 and state.n_learned == 0


def every_other_window(n):
    """Bananas rows in windows 0, 2, 4, ... (ending at 1000, 3000, ...): each next window is empty."""
    return [(x, y, (2 * i + 1) * 1000) for i, (x, y) in enumerate(datasets.Bananas().take(n))]


def test_a_row_whose_label_window_closes_without_a_row_learns_the_empty_label_once():
    learner = Learner(settings(label_delay_windows=1, empty_window_label=False), KEYRING)
    state, model, metric = learner.new_state(), build_model(MODEL), build_metric({"class": "metrics.LogLoss"})
    for x, y, end in every_other_window(30):
        step = learner.process(state, x, y, window_end_ms=end)
        # Plain River: the row before learned its empty window's label before this one was predicted.
        assert step.prediction.prediction == pytest.approx(model.predict_proba_one(x)[True], abs=1e-12)
        metric.update(False, model.predict_proba_one(x))
        model.learn_one(x, False)
    assert (state.n_learned, list(state.pending)) == (29, [59_000])
    # The Flink learner closes the last row's label window when the watermark passes it.
    assert learner.close_windows(state, 59_999) == ([], 0)  # not closed yet
    steps, dropped = learner.close_windows(state, 60_000)
    assert (len(steps), dropped, state.n_learned, state.pending, state.pending_dropped) == (1, 0, 30, {}, 0)
    assert state.metric.get() == pytest.approx(metric.get(), abs=1e-12)


def test_without_an_empty_label_such_rows_are_dropped_and_counted():
    learner = Learner(settings(label_delay_windows=1), KEYRING)
    state = learner.new_state()
    for x, y, end in every_other_window(10):
        learner.process(state, x, y, window_end_ms=end)
    assert learner.waits_for(state, 20_000) and not learner.waits_for(state, 19_999)
    assert learner.close_windows(state, 20_000) == ([], 1)
    assert (state.n_learned, state.pending, state.pending_dropped, state.model_version) == (0, {}, 10, 0)


def test_the_empty_label_must_suit_the_label_column_and_the_model():
    good = {
        "features": {"columns": ["a"], "empty_window_label": [0]},
        "window": {"size_seconds": 10},
        "model": MODEL,
        "metric": {"class": "metrics.Accuracy"},
        "signing": SIGNING,
    }
    with pytest.raises(ConfigError, match="'features.empty_window_label' must be a boolean, a number or a string"):
        LearnerSettings.from_config(Config(good, "job.yaml"))
    assert label_value_error(False, "BOOLEAN", "binary classifier") is None
    assert (
        label_value_error(0, "BOOLEAN", "binary classifier")
        == "0 is a number, and the label column is of type BOOLEAN: give true or false"
    )
    assert "give 0 or 1" in label_value_error(2, "INTEGER", "binary classifier")
    assert label_value_error(2, "INTEGER", "multiclass classifier") is None
    assert label_value_error(True, "DOUBLE", "regressor") is not None
    assert label_value_error("none", "VARCHAR", "multiclass classifier") is None


def test_a_replayed_window_is_skipped_and_counted():
    learner = Learner(settings(), KEYRING)
    state = learner.new_state()
    rows = list(datasets.Bananas().take(3))
    for i, (x, y) in enumerate(rows):
        assert learner.process(state, x, y, window_end_ms=(i + 1) * 1000).prediction is not None
    assert learner.process(state, *rows[1], window_end_ms=2000).prediction is None
    assert (state.n_learned, state.model_version, state.replayed_windows) == (3, 3, 1)


def test_missing_label_is_counted_not_learned():
    learner = Learner(settings(), KEYRING)
    state = learner.new_state()
    learner.process(state, {"1": 0.0, "2": 1.0}, None, window_end_ms=1000)
    assert (state.n_learned, state.unlabeled, state.model_version) == (0, 1, 0)


@pytest.mark.parametrize("policy, every_n, due_after", [("every_window", 1, 1), ("every_n_updates", 3, 3)])
def test_count_policies(policy, every_n, due_after):
    learner = Learner(settings(snapshot_policy=policy, snapshot_every_n=every_n), KEYRING)
    state = learner.new_state()
    for i, (x, y) in enumerate(datasets.Bananas().take(due_after)):
        assert not learner.snapshot_due(state)
        learner.process(state, x, y, window_end_ms=(i + 1) * 1000)
    assert learner.snapshot_due(state)
    envelope = decode(learner.publish("k", state, watermark_ms=1, now_ms=2), KEYRING)
    assert (envelope.key, envelope.model_version, envelope.metric_name) == ("k", due_after, "LogLoss")
    assert not learner.snapshot_due(state)


def test_only_time_bounded_policies_ask_for_a_timer():
    assert (
        Learner(settings(snapshot_policy="every_n_updates", snapshot_max_wait_ms=3000), KEYRING).snapshot_wait_ms
        == 3000
    )
    assert Learner(settings(snapshot_policy="every_n_updates", snapshot_max_wait_ms=0), KEYRING).snapshot_wait_ms == 0
    assert Learner(settings(snapshot_policy="every_seconds", snapshot_every_ms=7000), KEYRING).snapshot_wait_ms == 7000
    assert Learner(settings(snapshot_policy="every_window"), KEYRING).snapshot_wait_ms == 0


CONFIG = {
    "features": {"columns": ["1", "2"]},
    "window": {"size_seconds": 1},
    "model": MODEL,
    "metric": {"class": "metrics.LogLoss"},
    "signing": SIGNING,
}


def test_settings_from_config_reject_bad_values():
    good = {
        "features": {"columns": ["a"]},
        "window": {"size_seconds": 10},
        "model": MODEL,
        "metric": {"class": "metrics.Accuracy"},
        "signing": SIGNING,
    }
    assert LearnerSettings.from_config(Config(good, "job.yaml")).window_ms == 10_000
    with pytest.raises(ConfigError, match="snapshots.policy' must be one of"):
        LearnerSettings.from_config(Config({**good, "snapshots": {"policy": "sometimes"}}, "job.yaml"))
    with pytest.raises(ConfigError, match="features.columns' must be a non-empty list"):
        LearnerSettings.from_config(Config({**good, "features": {"columns": []}}, "job.yaml"))
    with pytest.raises(ConfigError, match="label_delay_windows' must be a whole number"):
        LearnerSettings.from_config(
            Config({**good, "features": {"columns": ["a"], "label_delay_windows": -1}}, "job.yaml")
        )
    with pytest.raises(ConfigError, match="'learner.shards' must be a whole number >= 1, not 0"):
        LearnerSettings.from_config(Config({**good, "learner": {"shards": 0}}, "job.yaml"))
    with pytest.raises(ConfigError, match="'learner.state_cache_keys' must be a whole number >= 0"):
        LearnerSettings.from_config(Config({**good, "learner": {"state_cache_keys": "many"}}, "job.yaml"))
    with pytest.raises(ConfigError, match="'learner.state_write_every' must be a whole number >= 1, not 0"):
        LearnerSettings.from_config(Config({**good, "learner": {"state_write_every": 0}}, "job.yaml"))
    with pytest.raises(ConfigError, match="'learner.bootstrap' must be one of none, snapshots, not 'topic'"):
        LearnerSettings.from_config(Config({**good, "learner": {"bootstrap": "topic"}}, "job.yaml"))


def test_a_key_started_from_a_snapshot_goes_on_from_its_version_and_window():
    learner = Learner(settings(snapshot_policy="every_window"), KEYRING)
    state = learner.new_state()
    rows = list(datasets.Phishing().take(30))
    for t, (x, y) in enumerate(rows[:20]):
        learner.process(state, {"1": x["empty_server_form_handler"], "2": x["popup_window"]}, y, (t + 1) * 1000)
    seed = decode(learner.publish("k", state, watermark_ms=0, now_ms=0), KEYRING)

    started = learner.state_from_snapshot(seed)
    assert (started.model_version, started.n_learned, started.last_window_end_ms) == (20, 20, 20_000)
    assert learner.process(started, {"1": 0.0, "2": 0.0}, True, 20_000).prediction is None  # learned already
    step = learner.process(started, {"1": 0.0, "2": 0.0}, True, 21_000)
    assert step.prediction.prediction == state.model.predict_proba_one({"1": 0.0, "2": 0.0})[True]
    assert (started.model_version, started.prior) == (21, "snapshot")


TOPICS = ("fiction", "science", "history")


def three_classes(n, label=lambda c: TOPICS[c]):
    """n rows of a seeded 3-class stream, features named as `settings` names them, labels made by `label`."""
    stream = datasets.synth.RandomRBF(seed_model=42, seed_sample=7, n_classes=3, n_features=2, n_centroids=6)
    return [({"1": x[0], "2": x[1]}, label(y)) for x, y in stream.take(n)]


@pytest.mark.parametrize("metric", ["metrics.Accuracy", "metrics.LogLoss", "metrics.MacroF1"])
@pytest.mark.parametrize("label", [lambda c: TOPICS[c], int, lambda c: c == 2], ids=["string", "int", "bool"])
def test_a_multiclass_tree_learns_any_label_type_as_progressive_val_score_does(metric, label):
    tree = {"steps": [{"class": "tree.HoeffdingTreeClassifier", "params": {"grace_period": 50}}]}
    rows = three_classes(400, label)
    learner = Learner(settings(model=tree, metric={"class": metric}), KEYRING)
    state = learner.new_state()
    steps = [learner.process(state, x, y, window_end_ms=(i + 1) * 1000) for i, (x, y) in enumerate(rows)]

    expected = evaluate.progressive_val_score(rows, build_model(tree), build_metric({"class": metric}))
    assert state.metric.get() == pytest.approx(expected.get(), abs=1e-12)
    last = steps[-1].prediction
    names = {str(y).lower() if isinstance(y, bool) else str(y) for _, y in rows}
    assert set(last.probabilities) == names
    assert sum(last.probabilities.values()) == pytest.approx(1.0)
    assert last.predicted == max(last.probabilities, key=last.probabilities.get)
    # Booleans publish the probability of true, as binary models always did; other classes the predicted one's.
    assert last.prediction == last.probabilities["true" if "true" in names else last.predicted]
    assert steps[0].prediction.prediction is None and steps[0].prediction.predicted is None  # knows no class yet


def test_a_regressor_publishes_its_value_and_no_class():
    regressor = {"steps": [{"class": "linear_model.LinearRegression"}]}
    learner = Learner(settings(model=regressor, metric={"class": "metrics.MAE"}), KEYRING)
    state, plain = learner.new_state(), build_model(regressor)
    for i in range(5):
        x = {"1": float(i), "2": 1.0}
        published = learner.process(state, x, 2.0 * i, window_end_ms=(i + 1) * 1000).prediction
        assert (published.prediction, published.predicted, published.probabilities) == (
            plain.predict_one(x),
            None,
            None,
        )
        plain.learn_one(x, 2.0 * i)
    assert published.prediction != 0.0


def test_a_probability_metric_for_a_model_without_probabilities_fails_at_submit():
    voting = {
        "steps": [
            {
                "class": "multiclass.OneVsOneClassifier",
                "params": {"classifier": {"class": "linear_model.LogisticRegression"}},
            }
        ]
    }
    with pytest.raises(ModelSpecError, match="metric.class: LogLoss scores probabilities, which OneVsOneClassifier"):
        Learner(settings(model=voting), KEYRING)
    learner = Learner(settings(model=voting, metric={"class": "metrics.Accuracy"}), KEYRING)
    state = learner.new_state()
    for i, (x, y) in enumerate(three_classes(50)):
        step = learner.process(state, x, y, window_end_ms=(i + 1) * 1000)
    assert step.prediction.predicted in TOPICS and step.prediction.probabilities is None


def test_state_from_an_older_version_is_migrated_not_reset():
    learner = Learner(settings(), KEYRING)
    state = learner.new_state()
    for i, (x, y) in enumerate(datasets.Bananas().take(5)):
        learner.process(state, x, y, window_end_ms=(i + 1) * 1000)
    # What a savepoint of the first release holds: no schema_version, none of the later fields.
    old = pickle.loads(pickle.dumps(state))
    for name in ("schema_version", "replayed_windows", "held_version", "gate", "drift", "generation"):
        delattr(old, name)
    old.pending_timer_ms = 12_000  # a field of releases before the due-key index (udfs/due_keys.py)
    migrated = migrate(old)
    assert (migrated.schema_version, migrated.replayed_windows) == (STATE_SCHEMA_VERSION, 0)
    assert (migrated.held_version, migrated.gate, migrated.drift, migrated.generation) == (0, None, None, 0)
    assert (migrated.n_learned, migrated.model_version) == (5, 5)


def test_a_savepoint_of_schema_2_restores_and_its_keys_keep_publishing_in_generation_0():
    learner = Learner(settings(snapshot_policy="every_window", generation=1_700_000_000_000), KEYRING)
    state = learner.new_state()
    learner.process(state, {"1": 0.1, "2": 0.2}, True, window_end_ms=1000)
    # Schema 2's layout: everything but the generation.
    old = pickle.loads(pickle.dumps(state))
    del old.generation
    old.schema_version = 2
    restored = migrate(pickle.loads(pickle.dumps(old)))
    assert (restored.schema_version, restored.generation, restored.model_version) == (3, 0, 1)
    learner.process(restored, {"1": 0.3, "2": 0.1}, False, window_end_ms=2000)
    assert decode(learner.publish("k", restored, 0, 0), KEYRING).order == (0, 2)
    # A key this job creates is of its own generation, and outranks every version of generation 0.
    assert learner.new_state().generation == 1_700_000_000_000


def test_every_key_of_a_job_started_afresh_outranks_the_jobs_before_it():
    first = Learner(LearnerSettings.from_config(Config(CONFIG, "job.yaml")), KEYRING)
    old = first.new_state()
    for t, (x, y) in enumerate(datasets.Bananas().take(250)):
        first.process(old, x, y, window_end_ms=(t + 1) * 1000)
    time.sleep(0.002)  # generations are milliseconds: two submits are further apart than that
    again = Learner(LearnerSettings.from_config(Config(CONFIG, "job.yaml")), KEYRING)
    new = again.new_state()
    again.process(new, *next(iter(datasets.Bananas().take(1))), window_end_ms=1000)
    published = [decode(learner.publish("k", state, 0, 0), KEYRING) for learner, state in ((first, old), (again, new))]
    assert published[0].model_version == 250 and published[1].model_version == 1
    assert published[1].order > published[0].order
    # Started from the old job's newest snapshot instead (learner.bootstrap), a key goes on in its lineage.
    seeded = again.state_from_snapshot(published[0])
    assert (seeded.generation, seeded.model_version) == (published[0].generation, 250)


@pytest.mark.parametrize(
    "signing, message",
    [
        (None, "'signing.keys' must map key ids to key files"),
        (
            {"key_id": "new", "keys": {"old": "k.key"}},
            "'signing.key_id' must be one of signing.keys \\(old\\), not 'new'",
        ),
        ({"key_id": "k", "keys": {"k": "missing.key"}}, "'signing.keys.k' cannot read .*missing.key: No such file"),
        (
            {"key_id": "k", "keys": {"k": "short.key"}},
            "'signing.keys.k' .*short.key holds 5 bytes; a key needs at least 32",
        ),
    ],
)
def test_signing_settings_name_the_setting_and_file_at_fault(tmp_path, signing, message):
    (tmp_path / "short.key").write_text("12345\n")
    if signing:
        signing = {**signing, "keys": {k: str(tmp_path / path) for k, path in signing["keys"].items()}}
    with pytest.raises(ConfigError, match=message):
        LearnerSettings.from_config(Config({**CONFIG, "signing": signing}, "job.yaml"))


def test_allow_cloudpickle_is_true_or_false_and_opens_the_allow_list():
    with pytest.raises(ConfigError, match="'snapshots.allow_cloudpickle' must be true or false"):
        LearnerSettings.from_config(Config({**CONFIG, "snapshots": {"allow_cloudpickle": "yes"}}, "job.yaml"))
    allowed = LearnerSettings.from_config(Config({**CONFIG, "snapshots": {"allow_cloudpickle": True}}, "job.yaml"))
    assert allowed.model_classes.allow_cloudpickle


def test_state_from_a_newer_version_fails_clearly():
    state = Learner(settings(), KEYRING).new_state()
    state.schema_version = STATE_SCHEMA_VERSION + 1
    with pytest.raises(StateSchemaError, match=f"schema version {STATE_SCHEMA_VERSION + 1}, this job reads up to"):
        migrate(state)


def test_a_row_with_a_non_finite_feature_is_quarantined_not_learned():
    learner = Learner(settings(), KEYRING)
    state = learner.new_state()
    learner.process(state, {"1": 0.1, "2": 0.2}, True, window_end_ms=1000)
    step = learner.process(state, {"1": float("inf"), "2": 0.2}, True, window_end_ms=2000)
    assert step.quarantined == "non-finite feature 1=inf" and step.prediction.prediction is None
    after = learner.process(state, {"1": 0.3, "2": 0.2}, False, window_end_ms=3000)
    assert state.n_learned == 2 and math.isfinite(after.prediction.prediction)


def test_string_and_boolean_features_reach_river_unchanged_and_their_types_are_published():
    spec = categorical_model(["x1", "x2"], ["genre", "promo"])
    learner = Learner(
        settings(
            model=spec,
            feature_names=("x1", "x2", "genre", "promo"),
            feature_types=("number", "number", "string", "boolean"),
            # the quality guard keeps statistics of the numbers only
            safety=SafetySettings(quality=QualitySettings(enabled=True, warmup_rows=5)),
        ),
        KEYRING,
    )
    rows = genre_rows(150, seed=5)
    state = learner.new_state()
    for i, (x, y) in enumerate(rows):
        learner.process(state, x, y, window_end_ms=(i + 1) * 1000)
    expected = evaluate.progressive_val_score(rows, build_model(spec), build_metric({"class": "metrics.LogLoss"}))
    assert state.metric.get() == pytest.approx(expected.get(), abs=1e-12)
    encoder = list(state.model["TransformerUnion"].transformers.values())[0]["OneHotEncoder"]
    assert dict(encoder.values) == {"genre": {"fiction", "science", "history"}, "promo": {True, False}}
    assert sorted(state.quality.variances) == ["x1", "x2"]
    published = decode(learner.publish("k", state, 0, 0), KEYRING)
    assert published.feature_types == {"x1": "number", "x2": "number", "genre": "string", "promo": "boolean"}
    # Without types (a learner built before the job read them), every feature is published as a number.
    assert decode(
        Learner(settings(), KEYRING).publish("k", Learner(settings(), KEYRING).new_state(), 0, 0), KEYRING
    ).feature_types == {"1": "number", "2": "number"}
