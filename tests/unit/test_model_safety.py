"""Model safety without Flink: drift, the publishing gate and rollback, challengers, priors, quality."""

import pickle
import random

import cloudpickle
import pytest
from river import linear_model

from jobs.config import Config, ConfigError
from tests.unit.models import KEYRING, SIGNING, snapshot
from tests.unit.models import SGD_MODEL as MODEL
from udfs.cold_start import write_template
from udfs.envelope import decode, encode, dump_model, feature_schema_hash
from udfs.learner import Learner, LearnerSettings, migrate
from udfs.model_spec import ModelSpecError, build_model
from udfs.signing import Keyring

FEATURES = ["x1_avg", "x2_avg"]


def learner(safety=None, tmp_path=None, **config):
    data = {
        "features": {"columns": FEATURES},
        "window": {"size_seconds": 1},
        "model": MODEL,
        "metric": {"class": "metrics.Accuracy"},
        "safety": safety or {},
        "signing": SIGNING,
        **config,
    }
    source = str(tmp_path / "conf" / "job.yaml") if tmp_path else "job.yaml"
    return Learner(LearnerSettings.from_config(Config(data, source)), KEYRING)


def rows(seed, n, concept=lambda x1, x2: x1 + x2 > 0):
    r = random.Random(seed)
    for _ in range(n):
        x1, x2 = r.uniform(-1, 1), r.uniform(-1, 1)
        yield {"x1_avg": x1, "x2_avg": x2}, concept(x1, x2)


def reversed_concept(x1, x2):
    return x1 + x2 < 0


def run(learner, state, stream, start=0, key="k"):
    """Feed rows the way LearnerFunction does; returns (correct flags, envelopes published)."""
    correct, published = [], []
    for i, (x, y) in enumerate(stream, start=start):
        step = learner.process(state, x, y, window_end_ms=(i + 1) * 1000)
        correct.append((step.prediction.prediction > 0.5) == y)
        if step.rollback_due:
            published.append(decode(learner.rollback(key, state, 0, 0), KEYRING))
        elif learner.snapshot_due(state) and (envelope := learner.publish(key, state, 0, 0)):
            published.append(decode(envelope, KEYRING))
    return correct, published


def test_drift_reset_recovers_accuracy_after_an_abrupt_concept_change():
    accuracies = {}
    for enabled in (False, True):
        model = learner({"drift": {"enabled": enabled, "action": "reset"}})
        state = model.new_state()
        run(model, state, rows(1, 1000))
        after, _ = run(model, state, rows(2, 500, reversed_concept), start=1000)
        accuracies[enabled] = sum(after) / len(after)
    assert state.drift.count >= 1 and state.drift.last_action == "reset"
    assert accuracies[True] > accuracies[False] + 0.1


def test_drift_flag_only_reports():
    model = learner({"drift": {"enabled": True, "action": "flag"}})
    state = model.new_state()
    run(model, state, rows(1, 600))
    weights = dict(state.model["LogisticRegression"].weights)
    steps = [
        model.process(state, x, y, window_end_ms=(601 + i) * 1000)
        for i, (x, y) in enumerate(rows(2, 60, reversed_concept))
    ]
    assert any(s.drifted for s in steps) and state.drift.last_action == "flag"
    # Flagging keeps learning the same model: its weights moved, they were not reset to nothing.
    assert state.model["LogisticRegression"].weights and state.model["LogisticRegression"].weights != weights


def test_gate_holds_back_a_poisoned_key_and_rolls_back_its_served_model():
    safety = {
        "gate": {"enabled": True, "window": 50, "margin": 0.1, "min_rows": 20, "rollback": True, "rollback_margin": 0.2}
    }
    model = learner(safety, snapshots={"policy": "every_n_updates", "every_n_updates": 10})
    poisoned, clean = model.new_state(), model.new_state()
    _, before = run(model, poisoned, rows(1, 400))
    flipped = ((x, not y) for x, y in rows(2, 150))
    _, during = run(model, poisoned, flipped, start=400)
    _, clean_published = run(model, clean, rows(1, 550), key="clean")

    rollbacks = [s for s in during if "rollback" in s.extra]
    assert len(rollbacks) == 1
    record = rollbacks[0]
    assert record.extra["rollback"]["from_version"] == before[-1].model_version
    assert record.extra["rollback"]["to_version"] == before[-2].model_version
    assert record.model_version > before[-1].model_version and record.payload == before[-2].payload
    assert poisoned.gate.held_back >= 10 and len(during) == 1  # nothing but the rollback got through
    assert clean.gate.held_back == 0 and clean.gate.rollbacks == 0 and len(clean_published) == 55


def test_gate_publishes_again_once_the_key_recovers():
    safety = {"gate": {"enabled": True, "window": 50, "margin": 0.1, "min_rows": 20}}
    model = learner(safety, snapshots={"policy": "every_n_updates", "every_n_updates": 10})
    state = model.new_state()
    run(model, state, rows(1, 300))
    run(model, state, ((x, not y) for x, y in rows(2, 60)), start=300)
    held = state.gate.held_back
    _, published = run(model, state, rows(3, 300), start=360)
    assert held > 0 and published and published[-1].extra["held_back"] == state.gate.held_back


def test_challenger_that_scores_better_is_promoted():
    slow = {
        "steps": [
            {
                "class": "linear_model.LogisticRegression",
                "params": {"optimizer": {"class": "optim.SGD", "params": {"lr": 0.0001}}},
            }
        ]
    }
    model = learner({"challenger": {"enabled": True, "model": MODEL, "window": 100}}, model=slow)
    state = model.new_state()
    _, published = run(model, state, rows(1, 400))
    assert state.duel.promotions == 1 and state.duel.champion_role == "challenger"
    last = published[-1]
    assert last.extra["champion"] == "challenger" and last.extra["challenger"]["role"] == "model"
    # Serving gets both: the champion answers, the demoted spec can be shadow-scored.
    assert last.model()["LogisticRegression"].optimizer.learning_rate == 0.05
    assert last.challenger().optimizer.learning_rate == 0.0001


def test_drift_can_promote_the_challenger():
    safety = {
        "drift": {"enabled": True, "action": "promote_challenger"},
        "challenger": {"enabled": True, "model": MODEL, "window": 10_000},
    }
    model = learner(safety)
    state = model.new_state()
    run(model, state, rows(1, 600))
    run(model, state, rows(2, 100, reversed_concept), start=600)
    assert state.drift.count >= 1 and state.duel.promotions >= 1


def test_global_prior_gives_a_new_key_a_head_start():
    first_predictions = {}
    for prior in ("none", "global"):
        model = learner({"cold_start": {"prior": prior}})
        for seed in range(5):  # five keys sharing one concept
            run(model, model.new_state(), rows(seed, 200))
        newcomer = model.new_state()
        correct, _ = run(model, newcomer, rows(99, 10))
        first_predictions[prior] = (sum(correct), newcomer.prior)
    assert first_predictions["global"][1] == "global" and first_predictions["none"][1] == ""
    assert first_predictions["global"][0] >= 9 and first_predictions["global"][0] > first_predictions["none"][0]


def test_template_prior_from_a_signed_model_file_or_an_envelope(tmp_path):
    trained = build_model(MODEL)
    for x, y in rows(1, 300):
        trained.learn_one(x, y)
    write_template(trained, str(tmp_path / "model.rtml"), FEATURES, KEYRING)
    envelope = encode(snapshot(model=trained, feature_schema_hash=feature_schema_hash(FEATURES)), KEYRING)
    (tmp_path / "snapshot.bin").write_bytes(envelope)
    x = {"x1_avg": 0.5, "x2_avg": 0.4}
    for name in ("model.rtml", "snapshot.bin"):
        model = learner({"cold_start": {"prior": "template", "template": str(tmp_path / name)}})
        state = model.new_state()
        assert state.prior == "template"
        assert state.model.predict_proba_one(x) == trained.predict_proba_one(x)


def template(payload, keyring=KEYRING, features=FEATURES):
    return encode(snapshot(payload=payload, feature_schema_hash=feature_schema_hash(features)), keyring)


class RunsCode:
    def __reduce__(self):
        return exec, ("raise SystemExit('the template ran code')",)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read"),
        (b"not a pickle", "is not a snapshot envelope; a bare pickle is not loaded"),
        (cloudpickle.dumps(build_model(MODEL)), "is not a snapshot envelope; a bare pickle is not loaded"),
        (
            template(dump_model(build_model(MODEL)), Keyring({"test": b"w" * 32}, "test")),
            "is not signed with a key in signing.keys: signature does not match key 'test'",
        ),
        (template(pickle.dumps(RunsCode())), "model payload refused: the payload names builtins.exec"),
        (template(pickle.dumps({"a": 1})), "holds a dict, not a River model"),
        (template(dump_model(linear_model.LogisticRegression()), features=["other"]), "other feature columns"),
    ],
)
def test_a_bad_template_fails_at_submit_time(tmp_path, content, message):
    path = tmp_path / "prior.bin"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"safety.cold_start.template' .*{message}"):
        learner({"cold_start": {"prior": "template", "template": str(path)}})


def test_quality_guard_quarantines_outliers_and_stuck_rows_without_learning_them():
    model = learner({"quality": {"enabled": True, "max_sigma": 5, "warmup_rows": 30, "max_repeats": 3}})
    state = model.new_state()
    run(model, state, rows(1, 100))
    learned = state.n_learned
    outlier = model.process(state, {"x1_avg": 40.0, "x2_avg": 0.1}, True, window_end_ms=101_000)
    assert outlier.quarantined.startswith("x1_avg=40.0 is ") and outlier.prediction is not None
    stuck = [
        model.process(state, {"x1_avg": 0.3, "x2_avg": 0.3}, True, window_end_ms=(102 + i) * 1000) for i in range(5)
    ]
    assert [s.quarantined is not None for s in stuck] == [False, False, False, True, True]
    assert state.n_learned == learned + 3 and state.quality.quarantined == 3


def test_guards_turned_on_in_an_upgrade_start_on_restored_keys():
    plain = learner()
    state = plain.new_state()
    run(plain, state, rows(1, 50))
    restored = migrate(pickle.loads(pickle.dumps(state)))
    guarded = learner({"drift": {"enabled": True}, "gate": {"enabled": True}, "quality": {"enabled": True}})
    guarded.process(restored, {"x1_avg": 0.1, "x2_avg": 0.2}, True, window_end_ms=51_000)
    assert restored.drift is not None and restored.gate is not None and restored.quality is not None
    assert restored.n_learned == 51


@pytest.mark.parametrize(
    "safety, message",
    [
        ({"drfit": {}}, "'safety' has unknown part\\(s\\) drfit"),
        ({"drift": {"enabled": True, "action": "panic"}}, "'safety.drift.action' must be one of reset"),
        ({"drift": {"enabled": True, "action": "promote_challenger"}}, "promote_challenger needs safety.challenger"),
        ({"drift": {"detector": {"class": "metrics.Accuracy"}}}, "is not a River drift detector"),
        ({"gate": {"rollback": True}}, "'safety.gate.rollback' needs the gate itself enabled"),
        ({"gate": {"enabled": True, "windw": 5}}, "'safety.gate.windw' is not a setting: did you mean 'window'"),
        ({"gate": {"enabled": True, "window": "50"}}, "'safety.gate.window' must be a whole number, not '50'"),
        ({"drift": {"enabled": "yes"}}, "'safety.drift.enabled' must be true or false, not 'yes'"),
        ({"challenger": {"margin": [1]}}, r"'safety.challenger.margin' must be a number, not \[1\]"),
        ({"quality": {"max_sigma": True}}, "'safety.quality.max_sigma' must be a number, not True"),
        ({"cold_start": {"prior": "magic"}}, "'safety.cold_start.prior' must be one of none"),
        ({"cold_start": {"prior": "template"}}, "prior 'template' needs the path"),
        ({"quality": {"max_sigma": 0}}, "'safety.quality' needs max_sigma > 0"),
    ],
)
def test_bad_safety_settings_name_what_is_wrong(safety, message):
    with pytest.raises((ConfigError, ModelSpecError), match=message):
        learner(safety)


def test_a_challenger_of_another_kind_is_refused():
    regressor = {"steps": [{"class": "linear_model.LinearRegression"}]}
    with pytest.raises(ModelSpecError, match="must be a classifier exactly when model is one"):
        learner({"challenger": {"enabled": True, "model": regressor}})


def test_inverse_time_decay_is_a_declared_option():
    model = build_model(
        {
            "steps": [
                {
                    "class": "linear_model.LinearRegression",
                    "params": {
                        "optimizer": {
                            "class": "optim.SGD",
                            "params": {
                                "lr": {
                                    "class": "udfs.model_options.InverseTimeDecay",
                                    "params": {"eta0": 0.1, "alpha": 0.5},
                                }
                            },
                        }
                    },
                }
            ]
        }
    )
    assert model.optimizer.lr.get(2) == pytest.approx(0.05)
    with pytest.raises(ModelSpecError, match="unknown option 'udfs.model_options.Magic'"):
        build_model({"steps": [{"class": "udfs.model_options.Magic"}]})
    with pytest.raises(ModelSpecError, match="InverseTimeDecay rejected its parameters"):
        build_model(
            {
                "steps": [
                    {
                        "class": "linear_model.LinearRegression",
                        "params": {
                            "optimizer": {
                                "class": "optim.SGD",
                                "params": {
                                    "lr": {
                                        "class": "udfs.model_options.InverseTimeDecay",
                                        "params": {"eta0": -1, "alpha": 0.5},
                                    }
                                },
                            }
                        },
                    }
                ]
            }
        )
