"""The tests' factories, one per test object (unit and integration tests alike): River pipelines trained on
the first rows of Bananas, the model specs a config declares, the snapshots the job publishes, and the unit
tests' signing keys.

>>> snapshot("book-1", 3).model().predict_proba_one({"x1": 0.1, "x2": 0.2}) == trained(3).predict_proba_one(
...     {"x1": 0.1, "x2": 0.2})
True
>>> logistic_spec(optimizer=sgd(lr=0.01))["steps"][1]
{'class': 'linear_model.LogisticRegression', 'params': {'optimizer': {'class': 'optim.SGD', 'params': {'lr': 0.01}}}}
"""

import os
import random

from river import datasets, linear_model, preprocessing

from udfs.envelope import Snapshot, dump_model, feature_schema_hash
from udfs.signing import SigningSettings

# The project folder, which a test runs the project's commands in.
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The features `trained` models read.
FEATURES = ("x1", "x2")


def trained(n):
    """StandardScaler | LogisticRegression after `n` rows, with the features named x1 and x2."""
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in datasets.Bananas().take(n):
        model.learn_one({"x1": x["1"], "x2": x["2"]}, y)
    return model


def logistic_spec(**params) -> dict:
    """StandardScaler | LogisticRegression as a config's `model:` declares it, with `params` for the
    LogisticRegression (none: River's defaults, what `trained` builds)."""
    logistic = {"class": "linear_model.LogisticRegression"}
    if params:
        logistic["params"] = params
    return {"steps": [{"class": "preprocessing.StandardScaler"}, logistic]}


def sgd(**params) -> dict:
    """An `optim.SGD` spec with these params (none: a learning rate of 0.05)."""
    return {"class": "optim.SGD", "params": params or {"lr": 0.05}}


# What `trained` builds, as a config declares it.
MODEL = logistic_spec()
# The learner tests' model: plain SGD at 0.05, which learns Bananas-like rows within a few dozen windows.
SGD_MODEL = logistic_spec(optimizer=sgd())


def snapshot(key="k", version=1, model=None, **changes) -> Snapshot:
    """A snapshot as the job publishes it: `key`'s model `version` (by default `trained(version)`), one row
    learned per version, its window ending at 1 s and features named `FEATURES`; `changes` set any other
    field (`payload`, `extra`, `generation`, ...)."""
    fields = dict(
        key=key,
        model_version=version,
        n_learned=version,
        metric_name="LogLoss",
        metric_value=0.5,
        window_end_ms=1_000,
        watermark_ms=999,
        emitted_at_ms=1_100,
        feature_schema_hash=feature_schema_hash(FEATURES),
    )
    if "payload" not in changes:
        fields["payload"] = dump_model(model if model is not None else trained(version))
    return Snapshot(**{**fields, **changes})


# The `signing:` section of unit tests' configs, and its keys: a key for tests only, committed with them.
SIGNING = {
    "key_id": "test",
    "keys": {"test": os.path.join(os.path.dirname(os.path.abspath(__file__)), "signing-test.key")},
}
KEYRING = SigningSettings(tuple(SIGNING["keys"].items()), SIGNING["key_id"]).keyring()


def categorical_model(numbers, categories) -> dict:
    """A model declared as a config declares it (udfs/model_spec.py) for features of several types: the
    `categories` (strings, booleans) one-hot encoded, the `numbers` scaled, one logistic regression on both."""

    def branch(keys, transformer):
        return {
            "class": "compose.Pipeline",
            "params": {"steps": [{"class": "compose.Select", "params": {"keys": list(keys)}}, {"class": transformer}]},
        }

    return {
        "steps": [
            {
                "class": "compose.TransformerUnion",
                "params": {
                    "transformers": [
                        branch(categories, "preprocessing.OneHotEncoder"),
                        branch(numbers, "preprocessing.StandardScaler"),
                    ]
                },
            },
            {
                "class": "linear_model.LogisticRegression",
                "params": {"optimizer": {"class": "optim.SGD", "params": {"lr": 0.1}}},
            },
        ]
    }


GENRES = ("fiction", "science", "history")


def genre_rows(n: int, seed: int, names=("x1", "x2", "genre", "promo")) -> list:
    """n seeded (features, label) rows with a number pair, a genre and a boolean (x1 > 0), named `names`;
    the label leans on the genre, so that a model learns the categories."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x1, x2, genre = round(rng.uniform(-2, 2), 4), round(rng.uniform(-1, 1), 4), rng.choice(GENRES)
        y = (genre == "science") != (rng.random() < 0.15) if genre != "history" else x1 + x2 > 0
        rows.append((dict(zip(names, (x1, x2, genre, x1 > 0))), y))
    return rows
