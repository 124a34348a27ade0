"""Hot swaps under concurrent readers, in one process: every answer comes from one whole served version."""

import threading
import time

from river import datasets, linear_model, preprocessing

from serving.feature_store import FeatureStore
from serving.registry import ModelRegistry
from serving.requests import Serving, predict
from tests.unit.models import snapshot
from udfs.envelope import dump_model

FEATURES = ("x1", "x2")
X = {"x1": 0.3, "x2": -0.8}


def trained(model, n):
    for x, y in datasets.Bananas().take(n):
        model.learn_one({"x1": x["1"], "x2": x["2"]}, y)
    return model


def test_readers_see_whole_versions_in_order_while_the_writer_swaps():
    # Versions cycle through differently trained models, so an answer's prediction tells which model made it.
    models = [trained(preprocessing.StandardScaler() | linear_model.LogisticRegression(), n) for n in (5, 50, 500)]
    payloads = [dump_model(m) for m in models]
    expected = [m.predict_proba_one(X)[True] for m in models]
    assert len(set(expected)) == len(expected)
    serving = Serving(ModelRegistry(), FeatureStore(), FEATURES)
    serving.registry.offer(snapshot(version=1, payload=payloads[1]), applied_at=0.0)
    swapped = threading.Event()
    seen, problems = [], []

    def read():
        versions = []
        while not swapped.is_set():
            try:
                answer = predict(serving, {"key": "k", "features": X})
            except Exception as e:  # noqa: BLE001 - any failure is what this test looks for
                problems.append(repr(e))
                return
            version = answer["model_version"]
            if answer["prediction"] != expected[version % 3]:
                problems.append(f"v{version} answered {answer['prediction']}, its model gives {expected[version % 3]}")
            versions.append(version)
        if versions != sorted(versions):
            problems.append("a reader saw an older version after a newer one")
        seen.extend(versions)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for version in range(2, 100):
        serving.registry.offer(snapshot(version=version, payload=payloads[version % 3]), applied_at=float(version))
        time.sleep(0.001)  # lets readers in between swaps, as snapshots arriving from Kafka would
    swapped.set()
    for reader in readers:
        reader.join(timeout=30)

    assert problems == []
    assert len(set(seen)) > 10, "readers should have answered across many swaps"
    assert serving.registry.versions() == {"k": 99}


def test_predictions_leave_the_served_model_as_it_was():
    model = trained(preprocessing.StandardScaler() | linear_model.LogisticRegression(), 100)
    serving = Serving(ModelRegistry(), FeatureStore(), FEATURES)
    serving.registry.offer(snapshot(version=1, payload=dump_model(model)), applied_at=0.0)
    served = serving.registry.get("k").model
    before = dump_model(served)
    for i in range(50):
        predict(serving, {"key": "k", "features": {"x1": i, "x2": -i}})
    assert dump_model(served) == before


def test_a_regression_model_answers_with_predict_one():
    model = trained(preprocessing.StandardScaler() | linear_model.LinearRegression(), 100)
    serving = Serving(ModelRegistry(), FeatureStore(), FEATURES)
    serving.registry.offer(snapshot(version=3, payload=dump_model(model)), applied_at=0.0)
    answer = predict(serving, {"key": "k", "features": X})
    assert answer["prediction"] == model.predict_one(X) and answer["model_version"] == 3
