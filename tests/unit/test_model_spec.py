"""Model and metric declarations resolve to real River objects, and bad ones fail with the config path."""

import itertools
import math

import pytest
import yaml
from river import compose, datasets, ensemble, evaluate, linear_model, metrics, optim, preprocessing, tree

from tests.unit.models import logistic_spec, sgd
from udfs.model_spec import ModelSpecError, build_metric, build_model, is_classifier, label_type_error, model_kind

CONFIG = yaml.safe_load("""
model:
  steps:
    - class: preprocessing.StandardScaler
    - class: linear_model.LogisticRegression
      params:
        optimizer: {class: optim.SGD, params: {lr: 0.05}}
        l2: 0.0
metric: {class: metrics.LogLoss}
""")


def phishing(n=200):
    return list(itertools.islice(datasets.Phishing(), n))


def test_example_config_learns_exactly_like_the_same_pipeline_built_by_hand():
    from_spec = build_model(CONFIG["model"])
    by_hand = compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(lr=0.05), l2=0.0),
    )
    assert str(from_spec) == str(by_hand) == "StandardScaler | LogisticRegression"
    for x, y in phishing():
        assert from_spec.predict_proba_one(x) == by_hand.predict_proba_one(x)
        from_spec.learn_one(x, y)
        by_hand.learn_one(x, y)
    weights = from_spec["LogisticRegression"].weights
    assert weights == by_hand["LogisticRegression"].weights
    assert any(w != 0 for w in weights.values())  # it did learn
    assert from_spec["LogisticRegression"].optimizer.n_iterations == 200


def test_example_config_scores_like_river_progressive_validation():
    rows = phishing()
    ours = evaluate.progressive_val_score(rows, build_model(CONFIG["model"]), build_metric(CONFIG["metric"]))
    theirs = evaluate.progressive_val_score(
        rows,
        preprocessing.StandardScaler() | linear_model.LogisticRegression(optim.SGD(0.05), l2=0.0),
        metrics.LogLoss(),
    )
    assert ours.get() == theirs.get()
    assert ours.get() < math.log(2)  # better than a coin flip


def test_every_build_is_a_fresh_model_with_its_own_optimizer():
    a, b = build_model(CONFIG["model"]), build_model(CONFIG["model"])
    assert a["LogisticRegression"].optimizer is not b["LogisticRegression"].optimizer
    for x, y in phishing(20):
        a.learn_one(x, y)
    assert b["LogisticRegression"].optimizer.n_iterations == 0
    assert b["StandardScaler"].counts == {}


def test_one_step_is_the_estimator_itself():
    model = build_model({"steps": [{"class": "linear_model.LinearRegression", "params": {"l2": 0.1}}]})
    assert type(model) is linear_model.LinearRegression and model.l2 == 0.1


def test_params_may_be_empty_and_may_hold_lists_of_declarations():
    assert isinstance(
        build_model({"steps": [{"class": "tree.HoeffdingTreeClassifier", "params": None}]}),
        tree.HoeffdingTreeClassifier,
    )
    voting = build_model(
        {
            "steps": [
                {
                    "class": "ensemble.VotingClassifier",
                    "params": {
                        "models": [
                            {"class": "linear_model.LogisticRegression"},
                            {"class": "tree.HoeffdingTreeClassifier", "params": {"grace_period": 50}},
                        ]
                    },
                }
            ]
        }
    )
    assert isinstance(voting, ensemble.VotingClassifier)
    assert [type(m).__name__ for m in voting.models] == ["LogisticRegression", "HoeffdingTreeClassifier"]
    assert voting.models[1].grace_period == 50


# Learning-rate schedules are nested declarations.


def test_nested_inverse_scaling_scheduler():
    spec = logistic_spec(
        optimizer=sgd(lr={"class": "optim.schedulers.InverseScaling", "params": {"learning_rate": 0.1, "power": 1.0}})
    )
    model = build_model(spec)
    optimizer = model["LogisticRegression"].optimizer
    assert isinstance(optimizer.lr, optim.schedulers.InverseScaling)
    assert (optimizer.lr.learning_rate, optimizer.lr.power) == (0.1, 1.0)
    by_hand = preprocessing.StandardScaler() | linear_model.LogisticRegression(
        optim.SGD(optim.schedulers.InverseScaling(0.1, power=1.0))
    )
    for t, (x, y) in enumerate(phishing(50)):
        assert optimizer.learning_rate == pytest.approx(0.1 / (t + 1))  # eta0 / (t + 1)
        assert model.predict_proba_one(x) == by_hand.predict_proba_one(x)
        model.learn_one(x, y)
        by_hand.learn_one(x, y)


def test_nested_optimal_scheduler_with_a_nested_loss():
    spec = logistic_spec(
        optimizer=sgd(
            lr={"class": "optim.schedulers.Optimal", "params": {"loss": {"class": "optim.losses.Log"}, "alpha": 0.01}}
        )
    )
    schedule = build_model(spec)["LogisticRegression"].optimizer.lr
    assert isinstance(schedule, optim.schedulers.Optimal) and isinstance(schedule.loss, optim.losses.Log)
    # Bottou's 1 / (alpha (t0 + t)), which is eta0 / (1 + eta0 alpha t) with eta0 set by alpha and the loss.
    eta0 = schedule.get(0)
    assert all(schedule.get(t) == pytest.approx(eta0 / (1 + eta0 * 0.01 * t)) for t in range(100))


def test_intercept_lr_takes_a_scheduler_too():
    model = build_model(
        logistic_spec(intercept_lr={"class": "optim.schedulers.Constant", "params": {"learning_rate": 0.2}})
    )
    assert model["LogisticRegression"].intercept_lr.learning_rate == 0.2


# Metrics.


@pytest.mark.parametrize(
    "name, cls",
    [
        ("metrics.LogLoss", metrics.LogLoss),
        ("metrics.Accuracy", metrics.Accuracy),
        ("metrics.MAE", metrics.MAE),
    ],
)
def test_metric_resolution(name, cls):
    metric = build_metric({"class": name})
    assert type(metric) is cls and metric.get() == 0


def test_metric_params_and_model_compatibility():
    assert build_metric({"class": "metrics.FBeta", "params": {"beta": 2}}).beta == 2
    classifier = build_model(CONFIG["model"])
    assert isinstance(build_metric({"class": "metrics.LogLoss"}, model=classifier), metrics.LogLoss)
    with pytest.raises(ModelSpecError, match=r"^metric\.class: metrics\.MAE does not work with LogisticRegression$"):
        build_metric({"class": "metrics.MAE"}, model=classifier)


def test_a_metric_must_be_a_river_metric():
    with pytest.raises(ModelSpecError, match=r"^metric\.class: preprocessing\.StandardScaler is not a River metric"):
        build_metric({"class": "preprocessing.StandardScaler"})
    with pytest.raises(
        ModelSpecError,
        match=r"^metric\.class: unknown River class 'metrics\.Acuracy' \(did you mean 'metrics\.Accuracy'\?\)$",
    ):
        build_metric({"class": "metrics.Acuracy"})


# Classifier or not.


@pytest.mark.parametrize(
    "spec, expected",
    [
        (CONFIG["model"], True),
        ({"steps": [{"class": "tree.HoeffdingTreeClassifier"}]}, True),
        ({"steps": [{"class": "preprocessing.StandardScaler"}, {"class": "linear_model.LinearRegression"}]}, False),
    ],
)
def test_is_classifier_looks_at_the_final_estimator(spec, expected):
    assert is_classifier(build_model(spec)) is expected


# What each kind of model learns, by the label column's SQL type (LogicalTypeRoot, as the DDL spells it).

TREE = {"steps": [{"class": "preprocessing.StandardScaler"}, {"class": "tree.HoeffdingTreeClassifier"}]}
REGRESSOR = {"steps": [{"class": "linear_model.LinearRegression"}]}
SQL_TYPES = {
    "BOOLEAN": "BOOLEAN",
    "INTEGER": "INT",
    "BIGINT": "BIGINT",
    "VARCHAR": "STRING",
    "DOUBLE": "DOUBLE",
    "DECIMAL": "DECIMAL(10, 2)",
}


@pytest.mark.parametrize(
    "spec, kind, accepted",
    [
        (CONFIG["model"], "binary classifier", {"BOOLEAN", "INTEGER", "BIGINT"}),
        (TREE, "multiclass classifier", {"BOOLEAN", "INTEGER", "BIGINT", "VARCHAR"}),
        (REGRESSOR, "regressor", {"INTEGER", "BIGINT", "DOUBLE"}),
    ],
)
def test_the_label_type_is_checked_against_the_model_kind(spec, kind, accepted):
    model = build_model(spec)
    assert model_kind(model) == kind
    for root, name in SQL_TYPES.items():
        reason = label_type_error(model, root, name)
        assert (reason is None) == (root in accepted), (root, reason)
        if reason is not None:
            assert reason.startswith(f"is of type {name}, but ") and f"is a {kind}, which learns" in reason


@pytest.mark.parametrize("final", ["cluster.KMeans", "multioutput.ClassifierChain"])
def test_a_last_step_that_learns_no_single_label_is_refused(final):
    params = {"model": {"class": "linear_model.LogisticRegression"}} if "Chain" in final else {}
    with pytest.raises(ModelSpecError, match=rf"^model.steps\[0\]: {final} is neither a classifier nor a regressor"):
        build_model({"steps": [{"class": final, "params": params}]})


# Errors name the config path.


def test_unknown_nested_class_names_its_path_and_suggests_a_match():
    with pytest.raises(ModelSpecError) as error:
        build_model(logistic_spec(optimizer={"class": "optim.SDG", "params": {"lr": 0.05}}))
    assert str(error.value) == (
        "model.steps[1].params.optimizer.class: unknown River class 'optim.SDG' (did you mean 'optim.SGD'?)"
    )
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("linear_model.LogisticRegresion", "linear_model.LogisticRegression"),  # the job's submit-time message
        ("LogisticRegression", "linear_model.LogisticRegression"),
        ("river.linear_model.LogisticRegression", "linear_model.LogisticRegression"),
        ("linear_modle.LogisticRegression", "linear_model.LogisticRegression"),
        ("optim.schedulers.InverseScalling", "optim.schedulers.InverseScaling"),
        ("metrics.logloss", "metrics.LogLoss"),
    ],
)
def test_unknown_class_suggestions(name, suggestion):
    with pytest.raises(
        ModelSpecError, match=rf"^model\.steps\[0\]\.class: unknown River class '{name}' \(did you mean '{suggestion}'"
    ):
        build_model({"steps": [{"class": name}]})


@pytest.mark.parametrize(
    "name, reason",
    [
        ("os.system", "unknown River class 'os.system'$"),  # only ever river.os, which does not exist
        ("builtins.eval", "unknown River class 'builtins.eval'$"),
        ("..os", "is not a River class path"),
        (".linear_model.LogisticRegression", "is not a River class path"),
        ("linear_model.LogisticRegression.", "is not a River class path"),
        ("linear_model..LogisticRegression", "is not a River class path"),
        ("linear_model.__class__", "is not a River class path"),
        ("__import__", "is not a River class path"),
        ("linear_model.LogisticRegression.__init__", "is not a River class path"),
        ("linear_model.LogisticRegression.__subclasses__", "is not a River class path"),
        ("linear_model._private", "is not a River class path"),
        ("test_estimators.anything", "is not a River class path"),
        ("linear_model.LogisticRegression; import os", "is not a River class path"),
        ("__import__('os').system('true')", "is not a River class path"),
        ("stream.iter_csv", "'stream.iter_csv' is a function, not a class$"),
        ("optim.schedulers", "'optim.schedulers' is a module, not a class$"),
        ("base.ensemble.Random", "'base.ensemble.Random' is random.Random, not a class defined in River$"),
        ("bandit.base.Counter", "is collections.Counter, not a class defined in River$"),
        ("compose.pipeline.collections.OrderedDict", "unknown River class"),
        ("", "is not a River class path"),
        (None, "None is not a River class path"),
        (42, "42 is not a River class path"),
        (["linear_model.LogisticRegression"], "is not a River class path"),
    ],
)
def test_names_outside_river_are_rejected(name, reason):
    with pytest.raises(ModelSpecError, match=r"^model\.steps\[0\]\.class: .*" + reason):
        build_model({"steps": [{"class": name}]})


def test_rejected_names_in_nested_params_too():
    with pytest.raises(
        ModelSpecError,
        match=r"^model\.steps\[1\]\.params\.optimizer\.params\.lr\.class: unknown River class 'os\.system'$",
    ):
        build_model(logistic_spec(optimizer=sgd(lr={"class": "os.system", "params": {"command": "true"}})))


def test_unknown_parameter_names_its_path_and_what_the_class_takes():
    with pytest.raises(ModelSpecError) as error:
        build_model(logistic_spec(optimiser={"class": "optim.SGD"}))
    message = str(error.value)
    assert message.startswith(
        "model.steps[1].params.optimiser: linear_model.LogisticRegression has no parameter 'optimiser' "
        "(did you mean 'optimizer'? it takes: optimizer, loss, l2, l1, "
    )
    with pytest.raises(
        ModelSpecError,
        match=r"^model\.steps\[1\]\.params\.optimizer\.params\.learning_rate: "
        r"optim\.SGD has no parameter 'learning_rate' \(it takes: lr\)$",
    ):
        build_model(logistic_spec(optimizer=sgd(learning_rate=0.1)))
    with pytest.raises(ModelSpecError, match=r"^model\.steps\[0\]\.params\.scale: .*has no parameter 'scale'"):
        build_model(
            {
                "steps": [
                    {"class": "preprocessing.StandardScaler", "params": {"scale": True}},
                    {"class": "linear_model.LogisticRegression"},
                ]
            }
        )


def test_missing_required_parameter():
    with pytest.raises(
        ModelSpecError,
        match=r"^model\.steps\[1\]\.params\.optimizer\.params\.lr\.params: "
        r"optim\.schedulers\.InverseScaling needs 'learning_rate'$",
    ):
        build_model(logistic_spec(optimizer=sgd(lr={"class": "optim.schedulers.InverseScaling"})))


@pytest.mark.parametrize(
    "spec, message",
    [
        # River's own checks, whatever they raise, come back as spec errors at the right path.
        (
            logistic_spec(l1=0.1, l2=0.1),
            r"^model\.steps\[1\]\.params: linear_model\.LogisticRegression rejected its parameters: "
            r"NotImplementedError: ",
        ),
        (
            logistic_spec(
                optimizer=sgd(
                    lr={
                        "class": "optim.schedulers.Optimal",
                        "params": {"loss": {"class": "optim.losses.Log"}, "alpha": 0},
                    }
                )
            ),
            r"^model\.steps\[1\]\.params\.optimizer\.params\.lr\.params: optim\.schedulers\.Optimal rejected its "
            r"parameters: ZeroDivisionError",
        ),
        (
            logistic_spec(optimizer=sgd(lr={"class": "optim.schedulers.Optimal", "params": {"loss": "log"}})),
            r"^model\.steps\[1\]\.params\.optimizer\.params\.lr\.params: optim\.schedulers\.Optimal rejected its "
            r"parameters: AttributeError",
        ),
        (
            {
                "steps": [
                    {
                        "class": "tree.HoeffdingTreeRegressor",
                        "params": {"splitter": {"class": "tree.splitter.QOSplitter", "params": {"radius": 0}}},
                    }
                ]
            },
            r"^model\.steps\[0\]\.params\.splitter\.params: tree\.splitter\.QOSplitter rejected its parameters: "
            r"ValueError: 'radius' must be greater than zero\.$",
        ),
    ],
)
def test_bad_parameter_values(spec, message):
    with pytest.raises(ModelSpecError, match=message) as error:
        build_model(spec)
    assert error.value.__cause__ is not None  # River's own exception is kept as the cause


def test_a_river_class_given_as_a_plain_string_is_an_error_not_a_silent_string():
    with pytest.raises(
        ModelSpecError,
        match=r"^model\.steps\[1\]\.params\.optimizer: 'optim\.SGD' is a string; "
        r"declare the object as \{class: optim\.SGD, params: \{\.\.\.\}\}$",
    ):
        build_model(logistic_spec(optimizer="optim.SGD"))
    # Strings that are not River class paths are ordinary values.
    model = build_model({"steps": [{"class": "tree.HoeffdingTreeClassifier", "params": {"split_criterion": "gini"}}]})
    assert model.split_criterion == "gini"


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"steps": []}, r"^model\.steps: expected a non-empty list of steps, got \[\]$"),
        ({}, r"^model\.steps: expected a non-empty list of steps, got None$"),
        ({"steps": {"class": "linear_model.LogisticRegression"}}, r"^model\.steps: expected a non-empty list"),
        (["linear_model.LogisticRegression"], r"^model: expected a mapping with 'steps'"),
        (
            {"steps": [{"class": "linear_model.LogisticRegression"}], "name": "lr"},
            r"^model: unexpected key\(s\) 'name'",
        ),
        (
            {"steps": [{"class": "preprocessing.StandardScaler"}, "linear_model.LogisticRegression"]},
            r"^model\.steps\[1\]: expected a mapping like \{class: \.\.\., params: \{\.\.\.\}\}, "
            r"got 'linear_model\.LogisticRegression'$",
        ),
        ({"steps": [{"params": {"l2": 0.1}}]}, r"^model\.steps\[0\]: missing 'class'"),
        (
            {"steps": [{"class": "linear_model.LogisticRegression", "param": {"l2": 0.1}}]},
            r"^model\.steps\[0\]: unexpected key\(s\) 'param'; expected 'class' and optional 'params'$",
        ),
        (
            {"steps": [{"class": "linear_model.LogisticRegression", "params": [0.1]}]},
            r"^model\.steps\[0\]\.params: expected a mapping of parameter names to values, got \[0\.1\]$",
        ),
        (logistic_spec(optimizer={"params": {"lr": 0.1}}), r"^model\.steps\[1\]\.params\.optimizer: missing 'class'"),
    ],
)
def test_malformed_specs(spec, message):
    with pytest.raises(ModelSpecError, match=message):
        build_model(spec)


@pytest.mark.parametrize(
    "steps, message",
    [
        ([{"class": "metrics.Accuracy"}], r"^model\.steps\[0\]\.class: metrics\.Accuracy is not a River estimator$"),
        ([{"class": "optim.SGD"}], r"^model\.steps\[0\]\.class: optim\.SGD is not a River estimator$"),
        (
            [{"class": "linear_model.LogisticRegression"}, {"class": "preprocessing.StandardScaler"}],
            r"^model\.steps\[0\]: linear_model\.LogisticRegression is not a transformer; "
            r"only the last step may be a model$",
        ),
        (
            [{"class": "preprocessing.StandardScaler"}],
            r"^model\.steps\[0\]: preprocessing\.StandardScaler cannot predict \(no predict_one\); "
            r"the last step must be a model$",
        ),
    ],
)
def test_steps_must_form_a_pipeline_that_predicts(steps, message):
    with pytest.raises(ModelSpecError, match=message):
        build_model({"steps": steps})


def test_error_paths_follow_the_path_argument():
    with pytest.raises(ModelSpecError, match=r"^models\.churn\.steps\[0\]\.class: unknown River class"):
        build_model({"steps": [{"class": "nope.Nope"}]}, path="models.churn")
    with pytest.raises(ModelSpecError, match=r"^evaluation\.metric: missing 'class'"):
        build_metric({}, path="evaluation.metric")


def test_a_star_args_parameter_is_given_by_its_name_as_a_list():
    union = build_model(
        {
            "steps": [
                {
                    "class": "compose.TransformerUnion",
                    "params": {
                        "transformers": [
                            {"class": "compose.Select", "params": {"keys": ["genre"]}},
                            {"class": "compose.Select", "params": {"keys": ["x"]}},
                        ]
                    },
                },
                {"class": "linear_model.LinearRegression"},
            ]
        }
    )
    assert [sorted(t.keys) for t in union["TransformerUnion"].transformers.values()] == [["genre"], ["x"]]
    with pytest.raises(
        ModelSpecError,
        match=r"^model.steps\[0\].params.keys: compose.Select takes \*keys: expected a list, got 'genre'$",
    ):
        build_model(
            {
                "steps": [
                    {"class": "compose.Select", "params": {"keys": "genre"}},
                    {"class": "linear_model.LinearRegression"},
                ]
            }
        )
    with pytest.raises(ModelSpecError, match=r"model.steps\[0\].params.key: compose.Select has no parameter 'key'"):
        build_model(
            {
                "steps": [
                    {"class": "compose.Select", "params": {"key": ["genre"]}},
                    {"class": "linear_model.LinearRegression"},
                ]
            }
        )
