"""The models a replica serves: the newest version per key, swapped without locks on the read path.

One follower thread writes; request threads read. A swap builds the new `ServedModel` completely and
then rebinds one dict slot, which is atomic in CPython, so a reader sees the old model or the new
one, never a half-built one.

>>> from river import linear_model
>>> from udfs.envelope import Snapshot, dump_model
>>> def snapshot(version):
...     return Snapshot(key="k", model_version=version, n_learned=version, metric_name="LogLoss",
...         metric_value=0.5, window_end_ms=0, watermark_ms=0, emitted_at_ms=0,
...         feature_schema_hash="h", payload=dump_model(linear_model.LogisticRegression()))
>>> registry = ModelRegistry()
>>> registry.offer(snapshot(2), applied_at=1.0), registry.offer(snapshot(1), applied_at=2.0)
(True, False)
>>> registry.get("k").snapshot.model_version
2
"""

from __future__ import annotations

import dataclasses
from typing import Any

from udfs.envelope import Snapshot


@dataclasses.dataclass(frozen=True)
class ServedModel:
    snapshot: Snapshot
    model: Any
    applied_at: float

    def describe(self, now: float) -> dict:
        s = self.snapshot
        return {
            "key": s.key,
            "model_version": s.model_version,
            "n_learned": s.n_learned,
            "metric": {"name": s.metric_name, "value": s.metric_value},
            "window_end_ms": s.window_end_ms,
            "model_age_s": round(now - s.window_end_ms / 1000, 3),
            "applied_at": self.applied_at,
            # Window close -> servable in this replica, for this version.
            "freshness_s": round(self.applied_at - s.window_end_ms / 1000, 3),
        }


class ModelRegistry:
    def __init__(self):
        self._models: dict[str, ServedModel] = {}

    def get(self, key: str) -> ServedModel | None:
        return self._models.get(key)

    def keys(self) -> list[str]:
        return list(self._models)

    def versions(self) -> dict[str, int]:
        return {key: served.snapshot.model_version for key, served in list(self._models.items())}

    def __len__(self) -> int:
        return len(self._models)

    def offer(self, snapshot: Snapshot, applied_at: float, model=None) -> bool:
        """Serve this snapshot if it is newer than the key's current one; True when it was applied."""
        current = self._models.get(snapshot.key)
        if current is not None and current.snapshot.model_version >= snapshot.model_version:
            return False
        model = model if model is not None else snapshot.model()
        # The unpickled model is what serves; keeping its bytes as well would double the memory per key.
        self._models[snapshot.key] = ServedModel(dataclasses.replace(snapshot, payload=b""), model, applied_at)
        return True
