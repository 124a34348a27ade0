"""Pickled prototypes of a key's model and metric that unpickle into objects as quick to use as built ones.

Every new key's model and metric are unpickled from a prototype built once from the spec: building
the default model costs about 88 us, unpickling it 15 us. But plain unpickling sets an object's
attributes through its `__dict__`, and in CPython 3.11+ that gives the object a dictionary of its own
in place of the attribute values its constructor kept inline; River's per-row code then reads every
attribute the slower way (the default model predicted and learned in 17.3 us a row unpickled, 14.3 us
built). `dumps` pickles every River object so that unpickling makes it with `cls.__new__` and sets its
attributes one at a time, as its constructor did: 18.5 us to unpickle, 14.7 us a row.

Only the learner's own prototypes are pickled so: they never leave the process. States and snapshots
keep River's own pickles, which other releases and the serving replicas read (a state read back from
Flink state is as quick to unpickle as before, and its model as slow to use).

>>> import pickle
>>> from river import linear_model, preprocessing
>>> model = pickle.loads(dumps(preprocessing.StandardScaler() | linear_model.LogisticRegression()))
>>> model.learn_one({"x": 1.0}, True)
>>> model["LogisticRegression"].intercept != 0.0
True
"""

from __future__ import annotations

import copyreg
import io
import pickle

import cloudpickle
from river import base


def _set_attributes(obj, attributes: dict) -> None:
    """Unpickling's state setter: one attribute at a time, not through `obj.__dict__`."""
    for name, value in attributes.items():
        setattr(obj, name, value)


class _Pickler(cloudpickle.Pickler):
    """cloudpickle (a model may hold a lambda or a class of its user's), with River's objects rebuilt
    attribute by attribute."""

    def reducer_override(self, obj):
        cls = type(obj)
        if (
            isinstance(obj, base.Base)
            and hasattr(obj, "__dict__")
            and cls.__reduce_ex__ is object.__reduce_ex__
            and cls.__reduce__ is object.__reduce__
            and cls.__getstate__ is object.__getstate__
            and not hasattr(cls, "__setstate__")
        ):
            return copyreg.__newobj__, (cls,), dict(vars(obj)), None, None, _set_attributes
        return super().reducer_override(obj)


def dumps(obj) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.DEFAULT_PROTOCOL).dump(obj)
    return buffer.getvalue()
