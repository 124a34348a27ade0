"""A River model's answer for one row as the job publishes it and serving returns it; no Flink in it.

Three numbers-and-names describe any answer, whatever the model kind:

- `prediction`: one number. A regressor's value; for a classifier whose classes are booleans (every
  binary River model, such as `LogisticRegression`, answers in `False`/`True`) the probability of
  `True`; for any other classifier (integer or string classes) the probability of the class it
  predicts. None before a model can answer (an untrained tree knows no class yet).
- `predicted`: the predicted class as text (`"true"`/`"false"` for booleans, else `str(class)`), None
  for a regressor.
- `probabilities`: every known class's probability, by class name, None for a regressor (and for
  the few classifiers that predict labels only, `multiclass.OneVsOneClassifier` say).

`kind_of(model)` says what the model can be asked (cached per class of its last step: asking River
on every row costs); `predict` asks the model what its kind allows, `published` turns River's
outputs into the three values.

>>> from river import linear_model, tree
>>> binary = linear_model.LogisticRegression()
>>> binary.learn_one({"x": 1.0}, True)
>>> answer = predict(binary, {"x": 1.0}, ModelKind.of(binary))
>>> answer.predicted, sorted(answer.probabilities), answer.prediction == answer.probabilities["true"]
('true', ['false', 'true'], True)
>>> topics = tree.HoeffdingTreeClassifier()
>>> for label in ("fiction", "science", "science"):
...     topics.learn_one({"x": 1.0}, label)
>>> predict(topics, {"x": 1.0}, ModelKind.of(topics))  # doctest: +ELLIPSIS
Published(prediction=0.666..., predicted='science', probabilities={'fiction': 0.333..., 'science': 0.666...})
>>> published(None, 2.5, ModelKind(classifier=False))
Published(prediction=2.5, predicted=None, probabilities=None)
>>> class_name(True), class_name(2), class_name("science")
('true', '2', 'science')
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from river import base, compose, utils

__all__ = ["ModelKind", "Published", "class_name", "kind_of", "predict", "published", "raw_prediction"]


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """What a model can be asked: a classifier or not; whether it gives probabilities; whether its
    label is the most probable class of those (River's default `predict_one`), so that one call gives both."""

    classifier: bool
    has_probabilities: bool = False
    label_is_most_probable: bool = False

    @classmethod
    def of(cls, model) -> "ModelKind":
        return _kind_of_final(type(utils.inspect.extract_relevant(model)))


def kind_of(model) -> ModelKind:
    """`ModelKind.of(model)`, cheaper for the usual shapes (it is asked on every row): a plain model or a
    pipeline of plain models."""
    if type(model) is compose.Pipeline:
        # Its last step, without the list of all of them that `Pipeline._last_step` makes.
        model = next(reversed(model.steps.values()))
        if isinstance(model, compose.Pipeline):  # nested pipelines: rare
            return ModelKind.of(model)
    return _kind_of_final(type(model))


@functools.cache
def _kind_of_final(final: type) -> ModelKind:
    if not issubclass(final, base.Classifier):
        return ModelKind(classifier=False)
    return ModelKind(
        classifier=True,
        has_probabilities=final.predict_proba_one is not base.Classifier.predict_proba_one,
        label_is_most_probable=final.predict_one is base.Classifier.predict_one,
    )


# Made for every row: a frozen dataclass costs four times as much to make.
@dataclasses.dataclass(slots=True)
class Published:
    prediction: float | None
    predicted: str | None
    probabilities: dict[str, float] | None


def class_name(label) -> str:
    """A class as the predictions topic and serving name it: booleans as JSON spells them."""
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def raw_prediction(model, x: dict, kind: ModelKind) -> tuple[dict | None, Any]:
    """River's own outputs for a row, (probabilities or None, label or value), in as few calls as the model allows.

    The label is what `model.predict_one` would say: taken from the probabilities when River's default
    `predict_one` would take it so, asked for otherwise (voting and one-vs-one classifiers)."""
    if not kind.classifier:
        return None, model.predict_one(x)
    probabilities = model.predict_proba_one(x) if kind.has_probabilities else None
    if kind.label_is_most_probable:
        label = max(probabilities, key=probabilities.get) if probabilities else None
    else:
        label = model.predict_one(x)
    return probabilities, label


def published(probabilities: dict | None, label, kind: ModelKind) -> Published:
    """What is published for River's outputs (`raw_prediction`'s pair)."""
    if not kind.classifier:
        return Published(None if label is None else float(label), None, None)
    predicted = None if label is None else class_name(label)
    if not probabilities:
        return Published(None, predicted, None)
    # The classes of one label column are of one type: the first key tells which.
    if type(next(iter(probabilities))) is bool:
        named = {("true" if c else "false"): float(p) for c, p in probabilities.items()}
        # Binary: the positive class's probability, as it always was (0.0 while only False was seen).
        return Published(named.get("true", 0.0), predicted, named)
    named = {str(c): float(p) for c, p in probabilities.items()}
    return Published(named.get(predicted) if predicted is not None else None, predicted, named)


def predict(model, x: dict, kind: ModelKind) -> Published:
    """The model's published answer for one row."""
    return published(*raw_prediction(model, x, kind), kind)
