"""River models declared as data: a list of pipeline steps, resolved only inside the `river` package.

>>> model = build_model({"steps": [
...     {"class": "preprocessing.StandardScaler"},
...     {"class": "linear_model.LogisticRegression", "params": {"optimizer": {"class": "optim.SGD", "params": {"lr": 0.05}}}},
... ]})
>>> model
Pipeline (
  StandardScaler (
    with_std=True
  ),
  LogisticRegression (
    optimizer=SGD (
      lr=Constant (
        learning_rate=0.05
      )
    )
    loss=Log (
      weight_pos=1.
      weight_neg=1.
    )
    l2=0.
    l1=0.
    intercept_init=0.
    intercept_lr=Constant (
      learning_rate=0.01
    )
    clip_gradient=1e+12
    initializer=Zeros ()
  )
)
"""

from __future__ import annotations

import importlib
import inspect

import river
from river import compose
from river.metrics.base import Metric


class ModelSpecError(ValueError):
    """A model or metric declaration that does not resolve to River objects."""


def _resolve_class(name, path: str):
    if not isinstance(name, str) or not name or "__" in name or name.startswith(".") or name.endswith("."):
        raise ModelSpecError(f"{path}: {name!r} is not a River class name like 'linear_model.LogisticRegression'")
    module_name, _, class_name = name.rpartition(".")
    try:
        module = importlib.import_module(f"river.{module_name}") if module_name else river
    except ImportError:
        raise ModelSpecError(f"{path}: unknown River module 'river.{module_name}'") from None
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls) or not cls.__module__.startswith("river."):
        raise ModelSpecError(f"{path}: unknown River class '{name}'")
    return cls


def _build(spec, path: str):
    if not isinstance(spec, dict) or "class" not in spec:
        raise ModelSpecError(f"{path}: expected a mapping with 'class' (and optional 'params'), got {spec!r}")
    cls = _resolve_class(spec["class"], f"{path}.class")
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        raise ModelSpecError(f"{path}.params: expected a mapping, got {params!r}")
    accepted = inspect.signature(cls).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
    kwargs = {}
    for name, value in params.items():
        if name not in accepted and not takes_any:
            raise ModelSpecError(f"{path}.params: {spec['class']} has no parameter '{name}' (it takes: {', '.join(accepted)})")
        kwargs[name] = _build(value, f"{path}.params.{name}") if isinstance(value, dict) and "class" in value else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ModelSpecError(f"{path}: {spec['class']}({kwargs}) failed: {e}") from None


def build_model(spec, path: str = "model"):
    """A River estimator from `{"steps": [...]}`; several steps make a Pipeline."""
    steps = spec.get("steps") if isinstance(spec, dict) else None
    if not isinstance(steps, list) or not steps:
        raise ModelSpecError(f"{path}.steps: expected a non-empty list of steps")
    built = [_build(step, f"{path}.steps[{i}]") for i, step in enumerate(steps)]
    return built[0] if len(built) == 1 else compose.Pipeline(*built)


def build_metric(spec, path: str = "metric"):
    """A River metric from `{"class": "metrics.Accuracy"}`."""
    metric = _build(spec, path)
    if not isinstance(metric, Metric):
        raise ModelSpecError(f"{path}.class: {spec['class']} is not a River metric")
    return metric
