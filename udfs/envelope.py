"""The snapshot envelope: one versioned model of one key, as bytes on the snapshot topic.

The learner job encodes, serving replicas decode; both use this module only. Layout:

    b"RTML" | format version (1 byte) | metadata length (4 bytes, big-endian) | JSON metadata | payload

The payload is the cloudpickled River model; the metadata says which key and version it is, how it
scored, which window it saw last and which feature schema it expects.

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
import struct

import cloudpickle
import river

MAGIC = b"RTML"
FORMAT_VERSION = 1
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

    def model(self):
        """The River model, unpickled from the payload."""
        try:
            return cloudpickle.loads(self.payload)
        except Exception as e:
            raise EnvelopeError(f"snapshot of key {self.key!r} v{self.model_version}: model payload does not load: {e}") from e

    def metadata(self) -> dict:
        meta = dataclasses.asdict(self)
        del meta["payload"]
        return meta


def feature_schema_hash(feature_names) -> str:
    """A short, order-sensitive fingerprint of the feature columns a model is trained on."""
    return hashlib.sha256("\x1f".join(feature_names).encode()).hexdigest()[:16]


def dump_model(model) -> bytes:
    return cloudpickle.dumps(model)


def encode(snapshot: Snapshot) -> bytes:
    meta = json.dumps(snapshot.metadata(), separators=(",", ":"), allow_nan=False).encode()
    return _HEADER.pack(MAGIC, snapshot.format_version, len(meta)) + meta + snapshot.payload


def decode(data: bytes) -> Snapshot:
    """Parse an envelope; raises EnvelopeError naming what is wrong. The model stays unpickled."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < _HEADER.size:
        raise EnvelopeError(f"not a model snapshot envelope ({len(data or b'')} bytes is too short)")
    magic, version, meta_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeError(f"not a model snapshot envelope (starts with {bytes(data[:4])!r})")
    if version != FORMAT_VERSION:
        raise EnvelopeError(f"unsupported envelope format version {version} (this code reads {FORMAT_VERSION})")
    end = _HEADER.size + meta_len
    if len(data) < end:
        raise EnvelopeError(f"truncated envelope: metadata needs {meta_len} bytes, {len(data) - _HEADER.size} present")
    try:
        meta = json.loads(bytes(data[_HEADER.size:end]))
        return Snapshot(**meta, payload=bytes(data[end:]))
    except (ValueError, TypeError) as e:
        raise EnvelopeError(f"corrupt envelope metadata: {e}") from None
