"""Windows in which a key has no row: the label and the features they stand for, and the keys waiting on them.

With `features.label_delay_windows: k` the row of window t learns with the label of the key's row of
window t + k. A key with no row in t + k (a quiet key: no events, so no row) has, for many questions,
a true answer all the same: "purchases in the next window" is 0. `features.empty_window_label`
declares it; once window t + k has closed (the watermark passed its end) without a row of the key, the
row of window t learns with it, or, where none is declared, is dropped and counted (the learner's
Flink counter `pending_rows_dropped`). `features.empty_window_features` declares the features of such
a window for serving: a key whose latest row is older than the newest window is scored on them.

>>> from jobs.config import Config
>>> declared = EmptyWindows.from_config(Config({"features": {"columns": ["views", "buys"],
...     "empty_window_label": 0, "empty_window_features": {"views": 0, "buys": 0}}}, "job.yaml"))
>>> declared.label, declared.features
(0, {'views': 0.0, 'buys': 0.0})
>>> EmptyWindows.from_config(Config({"features": {"columns": ["views"]}}, "job.yaml"))
EmptyWindows(label=None, features=None)
>>> EmptyWindows.from_config(Config({"features": {"columns": ["views"], "empty_window_features": {"view": 0}}},
...                                  "job.yaml"))  # doctest: +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
jobs.config.ConfigError: job.yaml: 'features.empty_window_features' must give a finite number for every one of
features.columns (views) and nothing else, not {'view': 0}
>>> label_value_error(0, "DOUBLE", "regressor"), label_value_error("0", "DOUBLE", "regressor")
(None, "'0' is a string, and the label column is of type DOUBLE: give an integer or a number")

The learner's index of a shard's keys with rows waiting for a label, by the end of the window that
labels them (written to Flink state with the shard's states), so that closing a window reads only
the keys that wait on it:

>>> waiting = PendingKeys()
>>> waiting.add(3000, "b"); waiting.add(3000, "a"); waiting.add(4000, "a")
>>> waiting.pop_closed(3500), waiting.pop_closed(3500), waiting.as_dict()
([(3000, 'a'), (3000, 'b')], [], {4000: ['a']})

An expired key (udfs/idle_keys.py) leaves the index at once, and a window no other key waits on with it:

>>> waiting.add(5000, "b"); waiting.add(5000, "c"); waiting.discard({"a", "b"}); waiting.as_dict()
{5000: ['c']}
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT")


@dataclasses.dataclass(frozen=True)
class EmptyWindows:
    # The label of a window without a row of the key; None: none declared (such rows are dropped).
    label: Any = None
    # The features of such a window, for serving (None: none declared; such keys are flagged instead).
    features: dict | None = None

    @classmethod
    def from_config(cls, config) -> EmptyWindows:
        label = config.get("features.empty_window_label", None)
        if label is not None and (not isinstance(label, (bool, int, float, str)) or _not_finite(label)):
            raise config.error(
                "features.empty_window_label",
                f"must be a boolean, a number or a string (the label's type), not {label!r}",
            )
        features = config.get("features.empty_window_features", None)
        if features is not None:
            columns = config["features.columns"]
            if (
                not isinstance(features, dict)
                or set(features) != set(columns)
                or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) or _not_finite(v) for v in features.values()
                )
            ):
                raise config.error(
                    "features.empty_window_features",
                    f"must give a finite number for every one of features.columns "
                    f"({', '.join(map(str, columns))}) and nothing else, not {features!r}",
                )
            features = {name: float(features[name]) for name in columns}
        return cls(label=label, features=features)


def _not_finite(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def label_value_error(value, type_root: str, kind: str) -> str | None:
    """Why `value`, declared as the empty window's label, does not suit a label column of this SQL
    type (its LogicalTypeRoot name) learned by a model of this kind (udfs.model_spec.model_kind), or None."""
    if type_root == "BOOLEAN":
        ok, wanted = isinstance(value, bool), "true or false"
    elif type_root in _INTEGER_TYPES:
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        if ok and kind == "binary classifier" and value not in (0, 1):
            ok, wanted = False, "0 or 1 (the model is a binary classifier)"
    elif type_root in ("FLOAT", "DOUBLE"):
        ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), "an integer or a number"
    else:  # CHAR, VARCHAR
        ok, wanted = isinstance(value, str), "a string"
    if ok:
        return None
    what = "a string" if isinstance(value, str) else "a boolean" if isinstance(value, bool) else "a number"
    return f"{value!r} is {what}, and the label column is of type {type_root}: give {wanted}"


class PendingKeys:
    """label window end (ms) -> the keys with a row waiting for that window's label; a plain dict, so
    that it pickles into Flink state as one. A key whose row learned its label from a row of the key
    stays listed until the window closes: closing it then finds nothing waiting and reads on."""

    def __init__(self, by_window: dict | None = None):
        self._by_window = {end: list(keys) for end, keys in (by_window or {}).items()}

    def add(self, label_end_ms: int, key: str) -> None:
        self._by_window.setdefault(label_end_ms, []).append(key)

    def pop_closed(self, through_ms: int) -> list:
        """Remove and return (label window end, key) for every window ending by `through_ms`, in window
        then key order: the same order however many windows one call closes."""
        closed = sorted(end for end in self._by_window if end <= through_ms)
        return [(end, key) for end in closed for key in sorted(set(self._by_window.pop(end)))]

    def discard(self, keys: set) -> None:
        """Remove `keys` from every window (they expired); a window left without keys goes. One pass
        over the index for all of them: a shard's keys expire many at a time."""
        for end in list(self._by_window):
            kept = [key for key in self._by_window[end] if key not in keys]
            if kept:
                self._by_window[end] = kept
            else:
                del self._by_window[end]

    def as_dict(self) -> dict:
        return {end: list(keys) for end, keys in self._by_window.items()}

    def __len__(self) -> int:
        return sum(map(len, self._by_window.values()))
