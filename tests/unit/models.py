"""Models the serving unit tests serve: River pipelines trained on the first rows of Bananas; the
unit tests' signing keys."""

import os
import random

from river import datasets, linear_model, preprocessing

from udfs.signing import SigningSettings


def trained(n):
    """StandardScaler | LogisticRegression after `n` rows, with the features named x1 and x2."""
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in datasets.Bananas().take(n):
        model.learn_one({"x1": x["1"], "x2": x["2"]}, y)
    return model


# The `signing:` section of unit tests' configs, and its keys: a key for tests only, committed with them.
SIGNING = {"key_id": "test", "keys": {"test": os.path.join(os.path.dirname(os.path.abspath(__file__)), "signing-test.key")}}
KEYRING = SigningSettings(tuple(SIGNING["keys"].items()), SIGNING["key_id"]).keyring()
# What `trained` builds, as a config declares it.
MODEL = {"steps": [{"class": "preprocessing.StandardScaler"}, {"class": "linear_model.LogisticRegression"}]}


def categorical_model(numbers, categories) -> dict:
    """A model declared as a config declares it (udfs/model_spec.py) for features of several types: the
    `categories` (strings, booleans) one-hot encoded, the `numbers` scaled, one logistic regression on both."""
    def branch(keys, transformer):
        return {"class": "compose.Pipeline", "params": {"steps": [
            {"class": "compose.Select", "params": {"keys": list(keys)}}, {"class": transformer}]}}
    return {"steps": [
        {"class": "compose.TransformerUnion", "params": {"transformers": [
            branch(categories, "preprocessing.OneHotEncoder"), branch(numbers, "preprocessing.StandardScaler")]}},
        {"class": "linear_model.LogisticRegression",
         "params": {"optimizer": {"class": "optim.SGD", "params": {"lr": 0.1}}}},
    ]}


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
