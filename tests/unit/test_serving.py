"""Serving without Kafka: the registry's swap rule, request checks and answers, metrics text."""

import dataclasses

import pytest
from river import linear_model, tree

from serving import v2
from serving.feature_store import FeatureStore
from serving.metrics import Counter, Histogram, render
from serving.registry import ModelRegistry
from serving.requests import BadRequest, NotFound, Serving, check_features, predict, predict_batch, recommend
from tests.unit.models import categorical_model, genre_rows, snapshot, trained
from udfs.feature_records import FeatureRow
from udfs.model_spec import build_model

FEATURES = ("x1", "x2")


def serving_with(*snapshots, fallback_key=None, rows=(), max_feature_age_s=float("inf")):
    serving = Serving(ModelRegistry(), FeatureStore(), FEATURES, fallback_key, max_feature_age_s)
    for s in snapshots:
        serving.registry.offer(s, applied_at=1.0)
    for row in rows:
        serving.features.offer(row, received_at=1.0)
    return serving


def test_only_a_newer_version_replaces_the_served_model():
    registry = ModelRegistry()
    assert registry.offer(snapshot("k", 5, trained(10)), applied_at=1.0)
    assert not registry.offer(snapshot("k", 5, trained(20)), applied_at=2.0)  # a duplicate
    assert not registry.offer(snapshot("k", 3, trained(20)), applied_at=2.0)  # reordered, older
    assert registry.offer(snapshot("k", 6, trained(20)), applied_at=3.0)
    assert registry.versions() == {"k": 6} and registry.get("k").applied_at == 3.0


def test_predict_answers_with_the_served_model():
    model = trained(50)
    serving = serving_with(snapshot("k", 7, model))
    answer = predict(serving, {"key": "k", "features": {"x1": 0.5, "x2": -1}})
    assert answer["prediction"] == model.predict_proba_one({"x1": 0.5, "x2": -1.0})[True]
    assert (answer["model_version"], answer["fallback"]) == (7, False)


@pytest.mark.parametrize(
    "request_body, message",
    [
        ({"features": {"x1": 1, "x2": 2}}, "missing 'key'"),
        ({"key": "k", "features": {"x1": 1}}, "missing feature 'x2'"),
        ({"key": "k", "features": {"x1": 1, "x2": "2"}}, "feature 'x2' must be a number, got str"),
        ({"key": "k", "features": {"x1": True, "x2": 2}}, "feature 'x1' must be a number, got bool"),
        ({"key": "k", "features": {"x1": float("nan"), "x2": 2}}, "feature 'x1' must be finite"),
        ({"key": "k", "features": [1, 2]}, "'features' must be an object"),
        ([1], "a request must be an object"),
    ],
)
def test_bad_requests_name_the_field(request_body, message):
    with pytest.raises(BadRequest, match=message):
        predict(serving_with(snapshot("k", 1, trained(5))), request_body)


def test_unknown_key_is_404_unless_a_fallback_model_answers():
    request = {"key": "new-book", "features": {"x1": 0.0, "x2": 0.0}}
    with pytest.raises(NotFound, match="no model for key 'new-book'"):
        predict(serving_with(snapshot("global", 3, trained(30))), request)
    answer = predict(serving_with(snapshot("global", 3, trained(30)), fallback_key="global"), request)
    assert (answer["model_key"], answer["fallback"]) == ("global", True)


def test_batch_answers_each_item_on_its_own():
    serving = serving_with(snapshot("k", 1, trained(5)))
    results = predict_batch(
        serving,
        {
            "requests": [
                {"key": "k", "features": {"x1": 1, "x2": 2}},
                {"key": "other", "features": {"x1": 1, "x2": 2}},
                {"key": "k", "features": {"x1": 1}},
            ]
        },
    )["results"]
    assert [r.get("status", 200) for r in results] == [200, 404, 400]
    with pytest.raises(BadRequest, match="'requests' list"):
        predict_batch(serving, {"requests": "all"})


def test_a_key_alone_uses_its_stored_features_and_sent_ones_override():
    model = trained(40)
    serving = serving_with(snapshot("k", 2, model), rows=[FeatureRow("k", 5_000, "h", {"x1": 0.5, "x2": 1.5})])
    by_key = predict(serving, {"key": "k"})
    assert by_key["prediction"] == model.predict_proba_one({"x1": 0.5, "x2": 1.5})[True]
    assert by_key["features_window_end_ms"] == 5_000
    overridden = predict(serving, {"key": "k", "features": {"x2": -3}})
    assert overridden["prediction"] == model.predict_proba_one({"x1": 0.5, "x2": -3.0})[True]


def test_no_stored_and_no_sent_features_is_404_naming_the_key():
    with pytest.raises(NotFound, match="no features stored for key 'k' and none sent"):
        predict(serving_with(snapshot("k", 2, trained(5))), {"key": "k"})


def test_old_stored_features_are_marked_stale():
    serving = serving_with(
        snapshot("k", 2, trained(5)), rows=[FeatureRow("k", 1_000, "h", {"x1": 0.0, "x2": 0.0})], max_feature_age_s=60
    )
    assert predict(serving, {"key": "k"})["features_stale"] is True


def test_a_key_without_a_row_in_the_newest_window_is_scored_on_the_empty_window_features_or_left_out():
    model = trained(80)
    rows = [
        FeatureRow("busy", 3_000, "h", {"x1": 1.5, "x2": -0.5}),
        FeatureRow("quiet", 2_000, "h", {"x1": 2.0, "x2": -1.0}),
    ]
    flagged = serving_with(snapshot("busy", 3, model), snapshot("quiet", 3, model), rows=rows)
    assert predict(flagged, {"key": "quiet"})["quiet"] is False  # until the follower has applied the newer window
    flagged.features.advance()
    answer = predict(flagged, {"key": "quiet"})
    assert (answer["quiet"], answer["features_empty_window"], answer["features_window_end_ms"]) == (True, False, 2_000)
    assert answer["prediction"] == model.predict_proba_one({"x1": 2.0, "x2": -1.0})[True]
    ranked = recommend(flagged, {"n": 5})
    assert ([r["key"] for r in ranked["ranking"]], ranked["quiet"], ranked["window_end_ms"]) == (
        ["busy"],
        ["quiet"],
        3_000,
    )

    empty = dataclasses.replace(flagged, empty_window_features={"x1": 0.0, "x2": 0.0})
    answer = predict(empty, {"key": "quiet"})
    assert (answer["quiet"], answer["features_empty_window"], answer["features_window_end_ms"]) == (True, True, 3_000)
    assert answer["prediction"] == model.predict_proba_one({"x1": 0.0, "x2": 0.0})[True]
    assert (
        predict(empty, {"key": "quiet", "features": {"x2": 1.0}})["prediction"]
        == model.predict_proba_one({"x1": 0.0, "x2": 1.0})[True]
    )
    ranked = recommend(empty, {"n": 5})
    assert sorted(r["key"] for r in ranked["ranking"]) == ["busy", "quiet"] and ranked["quiet"] == []


def test_check_features_keeps_the_model_order():
    assert list(check_features({"x2": 2, "x1": 1, "extra": "ignored"}, FEATURES)) == ["x1", "x2"]


def test_histogram_buckets_are_cumulative():
    h = Histogram("freshness_seconds", "Freshness.", [0.5, 1, 5])
    for value in (0.1, 0.7, 0.7, 3, 100):
        h.observe(value)
    text = render([h, Counter("c_total", "C.")])
    assert 'freshness_seconds_bucket{le="0.5"} 1' in text
    assert 'freshness_seconds_bucket{le="1.0"} 3' in text
    assert 'freshness_seconds_bucket{le="+Inf"} 5' in text
    assert "freshness_seconds_count 5" in text and "# TYPE c_total counter" in text


def test_served_model_describes_its_freshness():
    registry = ModelRegistry()
    registry.offer(dataclasses.replace(snapshot("k", 2, trained(5)), window_end_ms=10_000), applied_at=10.5)
    description = registry.get("k").describe(now=12.0)
    assert (description["freshness_s"], description["model_age_s"], description["model_version"]) == (0.5, 2.0, 2)


def test_recommend_ranks_keys_by_prediction_on_their_stored_features():
    hot, cold = trained(80), trained(80)
    serving = serving_with(
        snapshot("hot", 3, hot),
        snapshot("cold", 4, cold),
        snapshot("no-features", 1, hot),
        rows=[FeatureRow("hot", 1, "h", {"x1": 1.5, "x2": -0.5}), FeatureRow("cold", 1, "h", {"x1": -1.0, "x2": 1.0})],
    )
    ranking = recommend(serving, {"user": "u1", "n": 2})
    scores = {k: predict(serving, {"key": k})["prediction"] for k in ("hot", "cold")}
    assert [item["key"] for item in ranking["ranking"]] == sorted(scores, key=scores.get, reverse=True)
    assert ranking["unscored"] == ["no-features"]
    with pytest.raises(BadRequest, match="'n' must be a whole number"):
        recommend(serving, {"n": 0})


def topic_tree(science_share: float):
    """A Hoeffding tree that has seen science, fiction and history with about these shares of science."""
    model = tree.HoeffdingTreeClassifier()
    for i in range(60):
        label = "science" if i % 100 < science_share * 100 else ("fiction", "history")[i % 2]
        model.learn_one({"x1": 0.1 * (i % 7), "x2": 1.0}, label)
    return model


def test_a_multiclass_model_answers_its_class_and_probabilities_and_recommend_ranks_by_a_named_class():
    rows = [FeatureRow(k, 1, "h", {"x1": 0.3, "x2": 1.0}) for k in ("sci", "mixed", "fic")]
    models = {"sci": topic_tree(0.9), "mixed": topic_tree(0.5), "fic": topic_tree(0.1)}
    serving = serving_with(*(snapshot(k, 1, m) for k, m in models.items()), rows=rows)

    answer = predict(serving, {"key": "sci"})
    expected = models["sci"].predict_proba_one({"x1": 0.3, "x2": 1.0})
    assert answer["probabilities"] == expected and answer["predicted"] == "science"
    assert answer["prediction"] == expected["science"]  # the predicted class's probability
    ranking = recommend(serving, {"class": "science", "n": 3})["ranking"]
    assert [item["key"] for item in ranking] == ["sci", "mixed", "fic"]
    assert ranking[0]["score"] == expected["science"]
    assert [item["key"] for item in recommend(serving, {"class": "fiction"})["ranking"]][0] == "fic"
    assert recommend(serving, {"class": "poetry"})["ranking"][0]["score"] == 0.0  # a class no model has seen
    with pytest.raises(BadRequest, match="'class' must be a class name"):
        recommend(serving, {"class": 1.5})


def test_boolean_classes_are_named_as_json_spells_them_and_a_regressor_takes_no_class():
    regressor = linear_model.LinearRegression()
    regressor.learn_one({"x1": 1.0, "x2": 0.0}, 3.0)
    serving = serving_with(
        snapshot("b", 1, trained(50)),
        snapshot("r", 1, regressor),
        rows=[FeatureRow("b", 1, "h", {"x1": 0.5, "x2": 0.5}), FeatureRow("r", 1, "h", {"x1": 1.0, "x2": 0.0})],
    )
    binary = predict(serving, {"key": "b"})
    assert set(binary["probabilities"]) == {"true", "false"} and binary["prediction"] == binary["probabilities"]["true"]
    by_true = recommend(serving, {"class": True, "candidates": ["b"]})["ranking"][0]["score"]
    assert (
        by_true
        == recommend(serving, {"class": "true", "candidates": ["b"]})["ranking"][0]["score"]
        == binary["prediction"]
    )
    value = predict(serving, {"key": "r"})
    assert "predicted" not in value and value["prediction"] == regressor.predict_one({"x1": 1.0, "x2": 0.0})
    with pytest.raises(BadRequest, match="the model of key 'r' is a regressor"):
        recommend(serving, {"class": "true", "candidates": ["r"]})


# Features of every type (udfs/feature_types.py), typed by the serving model's envelope.
TYPED = ("x1", "x2", "genre", "promo", "pages")
TYPES = {"x1": "number", "x2": "number", "genre": "string", "promo": "boolean", "pages": "integer"}


def typed_model(n=200):
    """A categorical model (genre, promo and the pages count one-hot encoded, x1 and x2 scaled) after n rows."""
    model = build_model(categorical_model(["x1", "x2"], ["genre", "promo", "pages"]))
    for i, (x, y) in enumerate(genre_rows(n, seed=3)):
        model.learn_one({**x, "pages": 100 + 100 * (i % 3)}, y)
    return model


def typed_serving(model, rows=()):
    serving = Serving(ModelRegistry(), FeatureStore(), TYPED)
    serving.registry.offer(dataclasses.replace(snapshot("book", 5, model), feature_types=TYPES), applied_at=1.0)
    for row in rows:
        serving.features.offer(row, received_at=1.0)
    return serving


def test_features_of_every_type_reach_the_model_as_it_learned_them():
    model = typed_model()
    x = {"x1": 0.5, "x2": -1, "genre": "science", "promo": True, "pages": 200.0}
    answer = predict(typed_serving(model), {"key": "book", "features": x})
    # x2 as a float, pages as the int the model one-hot encoded (200.0 would be an unseen category "pages_200.0").
    learned = {"x1": 0.5, "x2": -1.0, "genre": "science", "promo": True, "pages": 200}
    assert answer["probabilities"] == {
        "false": model.predict_proba_one(learned)[False],
        "true": model.predict_proba_one(learned)[True],
    }
    assert answer["probabilities"] != {
        "false": model.predict_proba_one({**learned, "genre": "fiction"})[False],
        "true": model.predict_proba_one({**learned, "genre": "fiction"})[True],
    }


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("genre", 3, "feature 'genre' must be a string, got int"),
        ("genre", None, "feature 'genre' must be a string, got null"),
        ("genre", ["science"], "feature 'genre' must be a string, got list"),
        ("promo", 1, r"feature 'promo' must be a boolean \(true or false\), got int"),
        ("promo", "true", r"feature 'promo' must be a boolean \(true or false\), got str"),
        ("pages", 200.5, r"feature 'pages' must be an integer \(a whole number\), got 200.5"),
        ("pages", "200", "feature 'pages' must be an integer, got str"),
        ("pages", True, "feature 'pages' must be an integer, got bool"),
        ("x1", "science", "feature 'x1' must be a number, got str"),
        ("x1", False, "feature 'x1' must be a number, got bool"),
    ],
)
def test_a_feature_of_the_wrong_type_is_a_400_naming_the_field_and_the_type_it_needs(name, value, message):
    x = {"x1": 0.5, "x2": -1.0, "genre": "science", "promo": True, "pages": 200, name: value}
    with pytest.raises(BadRequest, match=f"^{message}$"):
        predict(typed_serving(typed_model(20)), {"key": "book", "features": x})


def test_stored_typed_features_answer_a_key_alone_and_recommend_ranks_on_them():
    model = typed_model()
    stored = {"x1": 1.0, "x2": 0.5, "genre": "history", "promo": True, "pages": 300}
    serving = typed_serving(model, rows=[FeatureRow("book", 5_000, "h", stored)])
    assert predict(serving, {"key": "book"})["prediction"] == model.predict_proba_one(stored)[True]
    ranked = recommend(serving, {"candidates": ["book"]})["ranking"]
    assert [(r["key"], r["score"]) for r in ranked] == [("book", model.predict_proba_one(stored)[True])]
    # A stored string overridden by a sent number is refused like any other.
    with pytest.raises(BadRequest, match="feature 'genre' must be a string, got float"):
        predict(serving, {"key": "book", "features": {"genre": 1.5}})


def test_an_envelope_naming_no_types_serves_numbers_as_before():
    serving = serving_with(snapshot("k", 1, trained(5)))
    assert serving.registry.get("k").snapshot.feature_types == {}
    with pytest.raises(BadRequest, match="feature 'x1' must be a number, got str"):
        predict(serving, {"key": "k", "features": {"x1": "a", "x2": 1}})


def test_the_inference_protocol_types_its_inputs_and_answers_as_predict_does():
    model = typed_model()
    serving = typed_serving(model)
    assert [(i["name"], i["datatype"]) for i in v2.metadata(serving, "book")["inputs"]] == [
        ("x1", "FP64"),
        ("x2", "FP64"),
        ("genre", "BYTES"),
        ("promo", "BOOL"),
        ("pages", "INT64"),
    ]
    rows = [
        {"x1": 0.5, "x2": -1.0, "genre": "science", "promo": True, "pages": 200},
        {"x1": -1.5, "x2": 0.2, "genre": "history", "promo": False, "pages": 100},
    ]
    datatypes = {"x1": "FP64", "x2": "FP32", "genre": "BYTES", "promo": "BOOL", "pages": "INT32"}
    inputs = [{"name": n, "shape": [2], "datatype": datatypes[n], "data": [r[n] for r in rows]} for n in TYPED]
    outputs = {o["name"]: o for o in v2.infer(serving, "book", {"inputs": inputs})["outputs"]}
    answers = [predict(serving, {"key": "book", "features": r}) for r in rows]
    assert outputs["prediction"]["data"] == [a["prediction"] for a in answers]
    assert outputs["predicted"] == {
        "name": "predicted",
        "shape": [2],
        "datatype": "BYTES",
        "data": [a["predicted"] for a in answers],
    }
    assert outputs["probabilities"] == {
        "name": "probabilities",
        "shape": [2, 2],
        "datatype": "FP64",
        "parameters": {"classes": ["false", "true"]},
        "data": [a["probabilities"][c] for a in answers for c in ("false", "true")],
    }

    def refused(name, **tensor):
        bad = [{**t, **tensor} if t["name"] == name else t for t in inputs]
        with pytest.raises(BadRequest) as e:
            v2.infer(serving, "book", {"inputs": bad})
        return str(e.value)

    assert (
        refused("genre", datatype="FP64")
        == "input 'genre': datatype must be BYTES (feature 'genre' is a string), got 'FP64'"
    )
    assert (
        refused("promo", datatype="INT64")
        == "input 'promo': datatype must be BOOL (feature 'promo' is a boolean), got 'INT64'"
    )
    assert (
        refused("pages", datatype="FP64")
        == "input 'pages': datatype must be one of INT64, INT32 (feature 'pages' is an integer), got 'FP64'"
    )
    assert refused("genre", data=["science", 4]) == "row 1: feature 'genre' must be a string, got int"


def test_the_inference_protocol_answers_a_regressor_with_its_value_alone():
    model = linear_model.LinearRegression()
    model.learn_one({"x1": 1.0, "x2": 2.0}, 3.0)
    serving = serving_with(snapshot("r", 1, model))
    assert [o["name"] for o in v2.metadata(serving, "r")["outputs"]] == ["prediction"]
    inputs = [{"name": n, "shape": [1], "datatype": "INT64", "data": [1]} for n in FEATURES]
    assert v2.infer(serving, "r", {"inputs": inputs})["outputs"] == [
        {"name": "prediction", "shape": [1], "datatype": "FP64", "data": [model.predict_one({"x1": 1.0, "x2": 1.0})]}
    ]
