"""The snapshot envelope: one versioned model of one key, as bytes on the snapshot topic.

The learner job encodes, serving replicas decode; both use this module only. Layout:

    b"RTML" | format version (1 byte) | metadata length (4 bytes, big-endian) | JSON metadata
            | payload | challenger payload (`challenger_bytes` long, may be empty)
            | HMAC-SHA256 of everything before it (32 bytes; format 3)

The payload is the pickled River model that serves; the challenger payload, when the job trains
one, is the model competing with it (serving may shadow-score it). The metadata says which key and
version it is, how it scored, which window it saw last and which feature schema it expects, the
`generation` of the job lineage that made it, the `key_id` of the key that signed it and, since format 4,
`feature_types`: each feature's type (udfs/feature_types.py: number, integer, string or boolean), from
the feature view's SQL column types, which serving checks requests against. A key's
envelopes are ordered by `(generation, model_version)` (`Snapshot.order`): a job started afresh has a
later generation (its submit time) than every envelope of the job before it, whatever their versions.

Formats 3 and 4 are signed (udfs/signing.py): `decode` verifies the signature with the reader's keys
before it returns anything, and refuses unsigned envelopes (formats 1 and 2, written before signing)
with a `SignatureError`. A format 3 envelope names no feature types: it decodes with `feature_types`
empty, which readers take as every feature a number, as every feature was then. Payloads are unpickled
only by `Snapshot.model` and `Snapshot.challenger`, through the allow-list of udfs/safe_pickle.py.
`extra` carries the model-safety facts, all optional:

- `drift`: `{"count", "last_window_end_ms", "last_action"}`, drifts detected for this key so far;
- `rollback`: `{"from_version", "to_version", "reason"}`: this record's model is version
  `to_version` again, replacing the degraded `from_version`;
- `challenger`: `{"metric_value", "role"}` of the challenger payload; `champion`: which declared
  model serves (`"model"` or `"challenger"`); `prior`: what a new key started from; `held_back`:
  snapshots the publishing gate has withheld for this key.

>>> from river import linear_model
>>> from udfs.signing import Keyring
>>> keyring = Keyring({"k1": b"s" * 32}, signing_key_id="k1")
>>> snapshot = Snapshot(key="book-1", model_version=3, n_learned=3, metric_name="LogLoss",
...     metric_value=0.6, window_end_ms=60_000, watermark_ms=59_999, emitted_at_ms=61_000,
...     feature_schema_hash=feature_schema_hash(["views", "price"]),
...     payload=dump_model(linear_model.LogisticRegression()))
>>> decoded = decode(encode(snapshot, keyring), keyring)
>>> (decoded.key, decoded.model_version, decoded.key_id, type(decoded.model()).__name__)
('book-1', 3, 'k1', 'LogisticRegression')
>>> decode(encode(dataclasses.replace(snapshot, feature_types={"views": "integer", "genre": "string"}), keyring),
...        keyring).feature_types
{'views': 'integer', 'genre': 'string'}
>>> decode(encode(snapshot, keyring), Keyring({"k1": b"t" * 32}))
Traceback (most recent call last):
...
udfs.envelope.EnvelopeSignatureError: signature does not match key 'k1'
>>> decode(b'{"not": "an envelope"}', keyring)
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

from udfs.feature_types import schema_error
from udfs.safe_pickle import ForbiddenClass, ModelClasses, loads
from udfs.signing import MAC_BYTES, Keyring, SignatureError

MAGIC = b"RTML"
FORMAT_VERSION = 4
# Formats 1 (no challenger payload) and 2 were unsigned: refused, as anything unsigned is. Format 3 is
# format 4 without `feature_types`.
SIGNED_FORMAT = 3
_HEADER = struct.Struct(">4sBI")
# What River alone needs; readers pass the allow-list of their declared models (ModelClasses.of).
RIVER_ONLY = ModelClasses()
# The keys of `Snapshot.extra` (the module's docstring says what each holds), written by udfs/publishing.py
# and read by serving. They are the wire format: the names are what every release writes and reads.
EXTRA_DRIFT = "drift"
EXTRA_ROLLBACK = "rollback"
EXTRA_CHALLENGER = "challenger"
EXTRA_CHAMPION = "champion"
EXTRA_PRIOR = "prior"
EXTRA_HELD_BACK = "held_back"


class EnvelopeError(ValueError):
    """Bytes that are not a snapshot envelope this code can read."""


class ForbiddenPayload(EnvelopeError):
    """A signed envelope whose payload names a class the reader's allow-list does not admit."""


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
    # The job lineage: the submit time (ms) of the job that created the key's state; 0 before lineages.
    generation: int = 0
    # The key that signed it (set by `encode`, checked by `decode`).
    key_id: str = ""
    # Since format 4: {feature name: udfs.feature_types type}, in the features' order; empty in format 3.
    feature_types: dict = dataclasses.field(default_factory=dict)

    @property
    def order(self) -> tuple[int, int]:
        """What "newer" means for a key's envelopes: a later job lineage, then a higher version."""
        return self.generation, self.model_version

    def model(self, classes: ModelClasses = RIVER_ONLY):
        """The River model, unpickled from the payload through the allow-list `classes`."""
        return self._load(self.payload, "model", classes)

    def challenger(self, classes: ModelClasses = RIVER_ONLY):
        """The challenger model, or None when the job trains none for this key."""
        return self._load(self.challenger_payload, "challenger", classes) if self.challenger_payload else None

    def _load(self, payload: bytes, what: str, classes: ModelClasses):
        where = f"snapshot of key {self.key!r} v{self.model_version}"
        try:
            return loads(payload, classes)
        except ForbiddenClass as e:
            raise ForbiddenPayload(f"{where}: {what} payload refused: {e}") from None
        except Exception as e:
            raise EnvelopeError(f"{where}: {what} payload does not load: {e}") from e

    def metadata(self) -> dict:
        # Field by field, not dataclasses.asdict: that deep-copies, and the learner calls this for every
        # snapshot it publishes.
        return {name: getattr(self, name) for name in _METADATA_FIELDS}


_METADATA_FIELDS = tuple(
    f.name for f in dataclasses.fields(Snapshot) if f.name not in ("payload", "challenger_payload")
)


# The metadata's JSON encoder, made once: `json.dumps` with these options makes one per call, a fifth of
# the JSON's cost, and the learner encodes an envelope for every snapshot it publishes. The same bytes.
_METADATA_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def feature_schema_hash(feature_names) -> str:
    """A short, order-sensitive fingerprint of the feature columns a model is trained on."""
    return hashlib.sha256("\x1f".join(feature_names).encode()).hexdigest()[:16]


def dump_model(model) -> bytes:
    """The model's bytes: standard pickle, three times faster than cloudpickle on River pipelines;
    cloudpickle for what pickle refuses (a lambda in a FuncTransformer, a class defined in a notebook),
    which readers load only with `snapshots.allow_cloudpickle` (udfs/safe_pickle.py)."""
    try:
        return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError):
        return cloudpickle.dumps(model)


def encode(snapshot: Snapshot, keyring: Keyring) -> bytes:
    """The envelope's bytes, signed with the keyring's signing key (whose id goes into the metadata)."""
    meta = snapshot.metadata()
    meta["key_id"] = keyring.signing_key_id
    meta["challenger_bytes"] = len(snapshot.challenger_payload)
    meta = _METADATA_JSON.encode(meta).encode()
    signed = b"".join(
        (_HEADER.pack(MAGIC, snapshot.format_version, len(meta)), meta, snapshot.payload, snapshot.challenger_payload)
    )
    return signed + keyring.sign(signed)


def decode(data: bytes, keyring: Keyring) -> Snapshot:
    """Parse an envelope and verify its signature with `keyring`; raises SignatureError (an
    EnvelopeError) for an unsigned, foreign or altered one, EnvelopeError naming what else is wrong.
    The model stays unpickled."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < _HEADER.size:
        raise EnvelopeError(f"not a model snapshot envelope ({len(data or b'')} bytes is too short)")
    magic, version, meta_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeError(f"not a model snapshot envelope (starts with {bytes(data[:4])!r})")
    if version > FORMAT_VERSION:
        raise EnvelopeError(f"unsupported envelope format version {version} (this code reads up to {FORMAT_VERSION})")
    if version < SIGNED_FORMAT:
        raise EnvelopeSignatureError(f"unsigned envelope (format {version}, written before snapshots were signed)")
    end = _HEADER.size + meta_len
    if len(data) < end + MAC_BYTES:
        raise EnvelopeError(
            f"truncated envelope: metadata and signature need {meta_len + MAC_BYTES} bytes, "
            f"{len(data) - _HEADER.size} present"
        )
    try:
        meta = json.loads(bytes(data[_HEADER.size : end]))
    except ValueError as e:
        raise EnvelopeError(f"corrupt envelope metadata: {e}") from None
    if not isinstance(meta, dict):
        raise EnvelopeError(f"corrupt envelope metadata: an object expected, got {type(meta).__name__}")
    signed, mac = bytes(data[:-MAC_BYTES]), bytes(data[-MAC_BYTES:])
    try:
        keyring.verify(meta.get("key_id"), signed, mac)
    except SignatureError as e:
        raise EnvelopeSignatureError(str(e)) from None
    try:
        challenger_bytes = meta.pop("challenger_bytes", 0)
        if not isinstance(challenger_bytes, int) or not 0 <= challenger_bytes <= len(signed) - end:
            raise EnvelopeError(f"corrupt envelope: challenger_bytes {challenger_bytes!r} does not fit the payload")
        split = len(signed) - challenger_bytes
        if (version >= 4 or "feature_types" in meta) and (problem := schema_error(meta.get("feature_types"))):
            raise EnvelopeError(f"corrupt envelope metadata: {problem}")
        return Snapshot(**meta, payload=signed[end:split], challenger_payload=signed[split:])
    except (ValueError, TypeError) as e:
        raise EnvelopeError(f"corrupt envelope metadata: {e}") from None


class EnvelopeSignatureError(EnvelopeError, SignatureError):
    """An envelope refused for its signature: unsigned, signed with a key not accepted, or altered."""
