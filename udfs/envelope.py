"""The snapshot envelope: one versioned model of one key, as bytes on the snapshot topic.

The learner job encodes, serving replicas decode; both use this module only. Layout:

    b"RTML" | format version (1 byte) | metadata length (4 bytes, big-endian) | JSON metadata
            | payload | challenger payload (format 2; `challenger_bytes` long, may be empty)

The payload is the pickled River model that serves; the challenger payload, when the job trains
one, is the model competing with it (serving may shadow-score it). The metadata says which key and
version it is, how it scored, which window it saw last and which feature schema it expects. `extra`
carries the model-safety facts, all optional:

- `drift`: `{"count", "last_window_end_ms", "last_action"}`, drifts detected for this key so far;
- `rollback`: `{"from_version", "to_version", "reason"}`: this record's model is version
  `to_version` again, replacing the degraded `from_version`;
- `challenger`: `{"metric_value", "role"}` of the challenger payload; `champion`: which declared
  model serves (`"model"` or `"challenger"`); `prior`: what a new key started from; `held_back`:
  snapshots the publishing gate has withheld for this key.

>>> from river import linear_model
>>> snapshot = Snapshot(key="book-1", model_version=3, n_learned=3, metric_name="LogLoss",
...     metric_value=0.6, window_end_ms=60_000, watermark_ms=59_999, emitted_at_ms=61_000,
...     feature_schema_hash=feature_schema_hash(["views", "price"]),
...     payload=dump_model(linear_model.LogisticRegression()))
>>> decoded = decode(encode(snapshot))
>>> (decoded.key, decoded.model_version, type(decoded.model()).__name__)
('book-1', 3, 'LogisticRegression')
>>> decode(b'{"not": "an envelope"}')
Traceback (most recent call last):
...
udfs.envelope.EnvelopeError: not a model snapshot envelope (starts with b'{"no')
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import struct

import cloudpickle
import river

MAGIC = b"RTML"
FORMAT_VERSION = 2
# Format 1 had no challenger payload; it is still read.
READABLE_FORMATS = (1, 2)
_HEADER = struct.Struct(">4sBI")


class EnvelopeError(ValueError):
    """Bytes that are not a snapshot envelope this code can read."""


@dataclasses.dataclass(frozen=True)
class Snapshot:
    key: str
    model_version: int
    n_learned: int
    metric_name: str
    metric_value: float | None
    window_end_ms: int
    watermark_ms: int
    emitted_at_ms: int
    feature_schema_hash: str
    payload: bytes = dataclasses.field(repr=False)
    river_version: str = river.__version__
    format_version: int = FORMAT_VERSION
    # Open-ended facts about this version (drift flags, rollback targets) that older readers ignore.
    extra: dict = dataclasses.field(default_factory=dict)
    challenger_payload: bytes = dataclasses.field(default=b"", repr=False)

    def model(self):
        """The River model, unpickled from the payload."""
        return self._load(self.payload, "model")

    def challenger(self):
        """The challenger model, or None when the job trains none for this key."""
        return self._load(self.challenger_payload, "challenger") if self.challenger_payload else None

    def _load(self, payload: bytes, what: str):
        try:
            return cloudpickle.loads(payload)
        except Exception as e:
            raise EnvelopeError(f"snapshot of key {self.key!r} v{self.model_version}: {what} payload does not load: {e}") from e

    def metadata(self) -> dict:
        # Field by field, not dataclasses.asdict: that deep-copies, and the learner calls this for every
        # snapshot it publishes.
        return {name: getattr(self, name) for name in _METADATA_FIELDS}


_METADATA_FIELDS = tuple(f.name for f in dataclasses.fields(Snapshot) if f.name not in ("payload", "challenger_payload"))


def feature_schema_hash(feature_names) -> str:
    """A short, order-sensitive fingerprint of the feature columns a model is trained on."""
    return hashlib.sha256("\x1f".join(feature_names).encode()).hexdigest()[:16]


def dump_model(model) -> bytes:
    """The model's bytes: standard pickle, three times faster than cloudpickle on River pipelines;
    cloudpickle for what pickle refuses (a lambda in a FuncTransformer, a class defined in a notebook).
    `cloudpickle.loads` reads both."""
    try:
        return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return cloudpickle.dumps(model)


def encode(snapshot: Snapshot) -> bytes:
    meta = snapshot.metadata()
    meta["challenger_bytes"] = len(snapshot.challenger_payload)
    meta = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode()
    return _HEADER.pack(MAGIC, snapshot.format_version, len(meta)) + meta + snapshot.payload + snapshot.challenger_payload


def decode(data: bytes) -> Snapshot:
    """Parse an envelope; raises EnvelopeError naming what is wrong. The model stays unpickled."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < _HEADER.size:
        raise EnvelopeError(f"not a model snapshot envelope ({len(data or b'')} bytes is too short)")
    magic, version, meta_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeError(f"not a model snapshot envelope (starts with {bytes(data[:4])!r})")
    if version not in READABLE_FORMATS:
        raise EnvelopeError(f"unsupported envelope format version {version} (this code reads up to {FORMAT_VERSION})")
    end = _HEADER.size + meta_len
    if len(data) < end:
        raise EnvelopeError(f"truncated envelope: metadata needs {meta_len} bytes, {len(data) - _HEADER.size} present")
    try:
        meta = json.loads(bytes(data[_HEADER.size:end]))
        challenger_bytes = meta.pop("challenger_bytes", 0) if isinstance(meta, dict) else 0
        if not isinstance(challenger_bytes, int) or not 0 <= challenger_bytes <= len(data) - end:
            raise EnvelopeError(f"corrupt envelope: challenger_bytes {challenger_bytes!r} does not fit the payload")
        split = len(data) - challenger_bytes
        return Snapshot(**meta, payload=bytes(data[end:split]), challenger_payload=bytes(data[split:]))
    except (ValueError, TypeError) as e:
        raise EnvelopeError(f"corrupt envelope metadata: {e}") from None
