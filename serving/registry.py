"""The models a replica serves: the newest version per key, swapped without locks on the read path,
with the few versions before it held back for rollbacks.

One follower thread writes (applying what the replica's reader process verified); request threads
or the event loop read. A swap builds the new `ServedModel` completely and
then rebinds one dict slot (the key's tuple of held versions, the served one last), which is atomic in
CPython, so a reader sees the old model or the new one, never a half-built one.

A rollback record (`extra["rollback"]` in the envelope) is a newer version whose model is an older
one's again. When that older version is still held, its model object serves again, with no
unpickling; otherwise the record's own payload is loaded. Either way the record's version is served.

"Newer" is `Snapshot.order`, (generation, model_version): a job started afresh (a later generation)
replaces the models of the job before it, whatever versions those reached. Payloads are unpickled
through the allow-list `classes` (udfs/safe_pickle.py), and only of envelopes the follower's reader
process verified (serving/follower.py).

>>> from river import linear_model
>>> from udfs.envelope import Snapshot, dump_model
>>> def snapshot(version, **extra):
...     return Snapshot(key="k", model_version=version, n_learned=version, metric_name="LogLoss",
...         metric_value=0.5, window_end_ms=0, watermark_ms=0, emitted_at_ms=0,
...         feature_schema_hash="h", payload=dump_model(linear_model.LogisticRegression()), extra=extra)
>>> registry = ModelRegistry(history_per_key=3)
>>> registry.offer(snapshot(2), applied_at=1.0) is not None, registry.offer(snapshot(1), applied_at=2.0)
(True, None)
>>> registry.offer(snapshot(3), applied_at=3.0).snapshot.model_version
3
>>> served = registry.offer(snapshot(4, rollback={"from_version": 3, "to_version": 2, "reason": "worse"}),
...                          applied_at=4.0)
>>> served.model is registry.held("k", 2).model, served.rollback.source
(True, 'history')
>>> registry.describe("k", now=5.0)["history_versions"]
[2, 3, 4]
>>> registry.offer(dataclasses.replace(snapshot(1), generation=2), applied_at=6.0).snapshot.order
(2, 1)
>>> registry.remove("k"), registry.get("k"), registry.remove("k")
(True, None, False)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from udfs.envelope import RIVER_ONLY, Snapshot
from udfs.envelope import EXTRA_CHALLENGER, EXTRA_CHAMPION, EXTRA_DRIFT, EXTRA_HELD_BACK, EXTRA_PRIOR, EXTRA_ROLLBACK
from udfs.prediction import ModelKind, kind_of
from udfs.safe_pickle import ModelClasses


@dataclasses.dataclass(frozen=True)
class Rollback:
    """A rollback record as this replica applied it: served version `version` is `to_version`'s model
    again, replacing `from_version`; `source` is "history" (the held model object) or "payload"."""

    version: int
    from_version: int
    to_version: int
    reason: str
    source: str
    applied_at: float


@dataclasses.dataclass(frozen=True)
class ServedModel:
    snapshot: Snapshot
    model: Any
    applied_at: float
    # The snapshot's challenger model, kept only when the replica shadow-scores challengers.
    shadow: Any = None
    # The last rollback applied to this key here; later versions keep showing it.
    rollback: Rollback | None = None
    # Worked out once per version: asking River on every prediction costs about 2 microseconds of 8.
    kind: ModelKind = ModelKind(classifier=False)

    def describe(self, now: float) -> dict:
        s = self.snapshot
        challenger = s.extra.get(EXTRA_CHALLENGER)
        return {
            "key": s.key,
            "model_version": s.model_version,
            "generation": s.generation,
            "key_id": s.key_id,
            "n_learned": s.n_learned,
            "metric": {"name": s.metric_name, "value": s.metric_value},
            "window_end_ms": s.window_end_ms,
            "model_age_s": round(now - s.window_end_ms / 1000, 3),
            "emitted_at_ms": s.emitted_at_ms,
            "applied_at": self.applied_at,
            # Window close -> servable in this replica, for this version.
            "freshness_s": round(self.applied_at - s.window_end_ms / 1000, 3),
            "rollback": dataclasses.asdict(self.rollback) if self.rollback else None,
            "drift": s.extra.get(EXTRA_DRIFT),
            "held_back": s.extra.get(EXTRA_HELD_BACK),
            "prior": s.extra.get(EXTRA_PRIOR),
            "champion": s.extra.get(EXTRA_CHAMPION),
            "challenger": {**challenger, "shadow": self.shadow is not None} if challenger else None,
        }


class ModelRegistry:
    """Per key, the last `history_per_key` served versions (the one serving included); older ones are
    dropped, so memory stays bounded. With `shadow_challenger`, each version's challenger model is
    loaded and kept next to it; without, challenger payloads are never unpickled."""

    def __init__(self, history_per_key: int = 3, shadow_challenger: bool = False, classes: ModelClasses = RIVER_ONLY):
        if isinstance(history_per_key, bool) or not isinstance(history_per_key, int) or history_per_key < 1:
            raise ValueError(f"history_per_key must be a whole number of at least 1, got {history_per_key!r}")
        self.history_per_key = history_per_key
        self.shadow_challenger = shadow_challenger
        self.classes = classes
        self._held: dict[str, tuple[ServedModel, ...]] = {}

    def get(self, key: str) -> ServedModel | None:
        held = self._held.get(key)
        return held[-1] if held else None

    def held(self, key: str, version: int, generation: int | None = None) -> ServedModel | None:
        """The held ServedModel of this key and version (of this generation, when given), if it is still
        in the history."""
        return next(
            (
                s
                for s in self._held.get(key, ())
                if s.snapshot.model_version == version and generation in (None, s.snapshot.generation)
            ),
            None,
        )

    def keys(self) -> list[str]:
        return list(self._held)

    def versions(self) -> dict[str, int]:
        return {key: held[-1].snapshot.model_version for key, held in list(self._held.items())}

    def describe(self, key: str, now: float) -> dict | None:
        """What `GET /models/{key}` shows: the served version and the versions held for rollbacks."""
        held = self._held.get(key)
        if not held:
            return None
        return {**held[-1].describe(now), "history_versions": [s.snapshot.model_version for s in held]}

    def __len__(self) -> int:
        return len(self._held)

    def remove(self, key: str) -> bool:
        """Stop serving `key` and drop its held versions (a tombstone: the key expired or was deleted);
        whether it was served. Its next snapshot, whatever its version, serves as a new key's."""
        return self._held.pop(key, None) is not None

    def offer(self, snapshot: Snapshot, applied_at: float) -> ServedModel | None:
        """Serve this snapshot if it is newer than the key's current one; the ServedModel now serving,
        or None. Raises EnvelopeError when a payload it needs does not load (ForbiddenPayload when the
        allow-list refuses it); what serves stays then."""
        current = self.get(snapshot.key)
        if current is not None and current.snapshot.order >= snapshot.order:
            return None
        rollback, model = current.rollback if current else None, None
        if EXTRA_ROLLBACK in snapshot.extra:
            asked = snapshot.extra[EXTRA_ROLLBACK]
            restored = self.held(snapshot.key, asked["to_version"], snapshot.generation)
            model = restored.model if restored else None
            rollback = Rollback(
                snapshot.model_version,
                asked["from_version"],
                asked["to_version"],
                str(asked["reason"]),
                "history" if restored else "payload",
                applied_at,
            )
        model = model if model is not None else snapshot.model(self.classes)
        served = ServedModel(
            # The unpickled models are what serve; keeping their bytes as well would double the memory per key.
            dataclasses.replace(snapshot, payload=b"", challenger_payload=b""),
            model,
            applied_at,
            shadow=snapshot.challenger(self.classes) if self.shadow_challenger else None,
            rollback=rollback,
            kind=kind_of(model),
        )
        self._held[snapshot.key] = (*self._held.get(snapshot.key, ()), served)[-self.history_per_key :]
        return served
