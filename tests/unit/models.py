"""Models the serving unit tests serve: River pipelines trained on the first rows of Bananas."""

from river import datasets, linear_model, preprocessing


def trained(n):
    """StandardScaler | LogisticRegression after `n` rows, with the features named x1 and x2."""
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in datasets.Bananas().take(n):
        model.learn_one({"x1": x["1"], "x2": x["2"]}, y)
    return model
