"""Models the serving unit tests serve: River pipelines trained on the first rows of Bananas; the
unit tests' signing keys."""

import os

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
