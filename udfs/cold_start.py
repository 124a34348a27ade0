"""Cold start: a key seen for the first time starts from a prior instead of an untrained model.

- `template`: a River model trained elsewhere, from a file holding a signed snapshot envelope: one
  record value of the snapshot topic (a well-trained key's model), or a model signed into one with
  `write_template`. It is verified with `signing.keys` and loaded through the allow-list of
  udfs/safe_pickle.py at submit time; a bare pickle is refused, as loading it could run any code.
- `global`: a model trained on all the rows of a shard of the keys (`learner.shards`), across its
  keys, in key order within a window; a new key starts from a copy of its shard's. It is Flink state
  of the shard (udfs/learner_function.py), so it is the same model at any parallelism and after a
  restore or a rescale. It costs one more learn per row; a key's own model still learns only that
  key's rows.
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
>>> import os, tempfile
>>> from udfs.signing import Keyring
>>> keyring, path = Keyring({"k1": b"s" * 32}, "k1"), os.path.join(tempfile.mkdtemp(), "prior.rtml")
>>> write_template(prior.new_model(), path, ["x"], keyring)
>>> template = load_template(path, ["x"], ValueError, keyring, ModelClasses())
>>> Prior(PriorSettings(kind="template"), template, linear_model.LinearRegression).new_model().predict_one({"x": 3}) > 0
True
"""

from __future__ import annotations

import dataclasses
import pickle
import time

from udfs.envelope import (
    MAGIC,
    EnvelopeError,
    EnvelopeSignatureError,
    Snapshot,
    decode,
    dump_model,
    encode,
    feature_schema_hash,
)
from udfs.safe_pickle import ModelClasses, loads
from udfs.signing import Keyring

PRIOR_KINDS = ("none", "global", "template")


@dataclasses.dataclass(frozen=True)
class PriorSettings:
    kind: str = "none"
    template: str | None = None

    @classmethod
    def from_config(cls, section: dict, error) -> "PriorSettings":
        settings = cls(kind=section.get("prior", "none"), template=section.get("template"))
        if unknown := set(section) - {"prior", "template"}:
            raise error(
                "safety.cold_start", f"unexpected key(s) {', '.join(sorted(unknown))}; it has prior and template"
            )
        if settings.kind not in PRIOR_KINDS:
            raise error("safety.cold_start.prior", f"must be one of {', '.join(PRIOR_KINDS)}, not {settings.kind!r}")
        if settings.kind == "template" and not settings.template:
            raise error("safety.cold_start.template", "prior 'template' needs the path of a model file")
        return settings


def write_template(model, path: str, feature_names, keyring: Keyring) -> None:
    """Sign a model trained elsewhere into a template file: an envelope of it, signed with the
    keyring's signing key. Signing says you trust the model: do it only for one you trained."""
    envelope = encode(
        Snapshot(
            key="template",
            model_version=0,
            n_learned=0,
            metric_name="",
            metric_value=None,
            window_end_ms=0,
            watermark_ms=0,
            emitted_at_ms=time.time_ns() // 1_000_000,
            feature_schema_hash=feature_schema_hash(feature_names),
            payload=dump_model(model),
        ),
        keyring,
    )
    with open(path, "wb") as f:
        f.write(envelope)


def load_template(path: str, feature_names, error, keyring: Keyring, classes: ModelClasses) -> bytes:
    """The pickled model in a template file: a snapshot envelope, verified with `keyring`, of these
    features, whose model loads through the allow-list `classes`."""
    setting = "safety.cold_start.template"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise error(setting, f"cannot read {path}: {e.strerror}") from None
    if not data.startswith(MAGIC):
        raise error(
            setting,
            f"{path} is not a snapshot envelope; a bare pickle is not loaded (it could run any "
            "code): sign the model into one with udfs.cold_start.write_template",
        )
    try:
        snapshot = decode(data, keyring)
    except EnvelopeSignatureError as e:
        raise error(setting, f"{path} is not signed with a key in signing.keys: {e}") from None
    except EnvelopeError as e:
        raise error(setting, f"{path}: {e}") from None
    if snapshot.feature_schema_hash != feature_schema_hash(feature_names):
        raise error(setting, f"{path}: a model of other feature columns than {list(feature_names)}")
    try:
        model = snapshot.model(classes)
    except EnvelopeError as e:
        raise error(setting, f"{path}: {e}") from None
    if not hasattr(model, "learn_one"):
        raise error(setting, f"{path} holds a {type(model).__name__}, not a River model")
    return snapshot.payload


class Prior:
    """Where a shard's new keys start; `learn` sees every row of the shard when the prior is global."""

    def __init__(self, settings: PriorSettings, template: bytes | None, build, classes: ModelClasses = ModelClasses()):
        self.settings = settings
        # Verified at submit time (load_template); loaded through the allow-list here once more, after
        # which copies of it are made with plain pickle.
        template_model = loads(template, classes) if template else None
        self.template = template
        self.build = build
        self.global_model = template_model if settings.kind == "global" else None

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
