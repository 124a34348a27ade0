"""Cold start: a key seen for the first time starts from a prior instead of an untrained model.

- `template`: a River model trained elsewhere, from a file: a cloudpickled model, or a snapshot
  envelope (one record value of the snapshot topic, e.g. a well-trained key's model).
- `global`: a model every learner subtask trains on all the rows it sees, across its keys; a new key
  starts from a copy of it. It is a cache, not Flink state: PyFlink has no operator state for
  Python keyed functions, so after a restart it starts again (from the template when one is given).
  It costs one more learn per row; a key's own model still learns only that key's rows.
- `none`: a new key starts untrained.

The trade-off: a prior predicts sensibly from a key's first row when keys share structure, but a key
unlike the others starts biased and must unlearn the prior first.

>>> from river import linear_model
>>> prior = Prior(PriorSettings(kind="global"), template=None, build=linear_model.LinearRegression)
>>> for i in range(50):
...     prior.learn({"x": i % 5}, 2.0 * (i % 5))
>>> prior.new_model().predict_one({"x": 3}) > 0
True
>>> Prior(PriorSettings(kind="none"), template=None, build=linear_model.LinearRegression).new_model().weights
{}
"""

from __future__ import annotations

import dataclasses
import os
import pickle


from udfs.envelope import MAGIC, EnvelopeError, decode, dump_model, feature_schema_hash

PRIOR_KINDS = ("none", "global", "template")


@dataclasses.dataclass(frozen=True)
class PriorSettings:
    kind: str = "none"
    template: str | None = None

    @classmethod
    def from_config(cls, section: dict, error) -> "PriorSettings":
        settings = cls(kind=section.get("prior", "none"), template=section.get("template"))
        if unknown := set(section) - {"prior", "template"}:
            raise error("safety.cold_start", f"unexpected key(s) {', '.join(sorted(unknown))}; it has prior and template")
        if settings.kind not in PRIOR_KINDS:
            raise error("safety.cold_start.prior", f"must be one of {', '.join(PRIOR_KINDS)}, not {settings.kind!r}")
        if settings.kind == "template" and not settings.template:
            raise error("safety.cold_start.template", "prior 'template' needs the path of a model file")
        return settings


def load_template(path: str, feature_names, error) -> bytes:
    """The pickled model in a template file, checked to load; an envelope must match the features."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise error("safety.cold_start.template", f"cannot read {path}: {e.strerror}") from None
    if data.startswith(MAGIC):
        try:
            snapshot = decode(data)
        except EnvelopeError as e:
            raise error("safety.cold_start.template", f"{path}: {e}") from None
        if snapshot.feature_schema_hash != feature_schema_hash(feature_names):
            raise error("safety.cold_start.template", f"{path}: a model of other feature columns than {list(feature_names)}")
        data = snapshot.payload
    try:
        model = pickle.loads(data)
    except Exception as e:
        raise error("safety.cold_start.template", f"{path} is neither a snapshot envelope nor a pickled model: {e}") from None
    if not hasattr(model, "learn_one"):
        raise error("safety.cold_start.template", f"{path} holds a {type(model).__name__}, not a River model")
    return data


class Prior:
    """Where the learner subtask's new keys start; `learn` sees every row when the prior is global."""

    def __init__(self, settings: PriorSettings, template: bytes | None, build):
        self.settings = settings
        self.template = template
        self.build = build
        self.global_model = pickle.loads(template) if settings.kind == "global" and template else None

    @property
    def learns(self) -> bool:
        return self.settings.kind == "global"

    def learn(self, x: dict, y) -> None:
        if self.global_model is None:
            self.global_model = self.build()
        self.global_model.learn_one(x, y)

    def source(self) -> str:
        """What `new_model` starts from now: "global", "template" or "" (untrained)."""
        if self.global_model is not None:
            return "global"
        return "template" if self.template is not None else ""

    def new_model(self):
        """A model for a new key: a copy of the prior, or an untrained one when there is none (yet)."""
        if self.global_model is not None:
            return pickle.loads(dump_model(self.global_model))
        if self.template is not None:
            return pickle.loads(self.template)
        return self.build()
