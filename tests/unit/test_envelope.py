"""The snapshot envelope codec: round trips, signatures, the payload allow-list, and clear errors
for foreign or damaged bytes."""

import json
import os
import pickle
import struct

import pytest
from river import linear_model

from tests.unit.models import KEYRING, snapshot, trained
from udfs.envelope import (
    EnvelopeError,
    EnvelopeSignatureError,
    ForbiddenPayload,
    decode,
    dump_model,
    encode,
    feature_schema_hash,
)
from udfs.safe_pickle import ModelClasses
from udfs.signing import Keyring


def test_round_trip_keeps_metadata_and_model_predictions():
    original = snapshot(model=trained(50), extra={"drift": True})
    decoded = decode(encode(original, KEYRING), KEYRING)
    assert decoded.metadata() == {**original.metadata(), "key_id": "test"}
    x = {"x1": 0.3, "x2": -0.2}
    assert decoded.model().predict_proba_one(x) == trained(50).predict_proba_one(x)


def test_challenger_payload_travels_after_the_model():
    challenger = linear_model.LinearRegression()
    original = snapshot(challenger_payload=dump_model(challenger), extra={"challenger": {"metric_value": 0.4}})
    decoded = decode(encode(original, KEYRING), KEYRING)
    assert decoded.metadata() == {**original.metadata(), "key_id": "test"}
    assert type(decoded.model()).__name__ == "Pipeline"
    assert type(decoded.challenger()).__name__ == "LinearRegression"
    assert decode(encode(snapshot(), KEYRING), KEYRING).challenger() is None


@pytest.mark.parametrize("version", [1, 2])
def test_unsigned_envelopes_of_older_jobs_are_refused_for_their_signature(version):
    old = snapshot(format_version=version)
    meta = json.dumps(old.metadata(), separators=(",", ":")).encode()
    with pytest.raises(EnvelopeSignatureError, match=f"unsigned envelope \\(format {version}"):
        decode(struct.pack(">4sBI", b"RTML", version, len(meta)) + meta + old.payload, KEYRING)


def test_every_byte_is_signed_header_metadata_and_both_payloads():
    envelope = encode(snapshot(challenger_payload=dump_model(linear_model.LinearRegression())), KEYRING)
    meta_end = 9 + struct.unpack(">I", envelope[5:9])[0]
    # The format byte (4 -> 3, a format this code reads), metadata, payloads, signature.
    for at, flip in ((4, 0x07), (12, 1), (meta_end + 3, 1), (len(envelope) - 40, 1), (len(envelope) - 1, 1)):
        altered = bytearray(envelope)
        altered[at] ^= flip
        with pytest.raises(EnvelopeSignatureError):
            decode(bytes(altered), KEYRING)


def test_a_forged_envelope_is_refused_before_its_payload_is_touched(tmp_path):
    marker = tmp_path / "ran"
    forged = snapshot(model_version=2**62, generation=2**62, payload=pickle.dumps(RunsCode(marker)))
    for keyring in (
        Keyring({"test": b"guessed-wrong-secret-of-32-bytes!!"}, "test"),
        Keyring({"other": b"o" * 32}, "other"),
    ):
        with pytest.raises(
            EnvelopeSignatureError, match="signature does not match key 'test'|key 'other', which is not"
        ):
            decode(encode(forged, keyring), KEYRING)
    assert not marker.exists()


def test_a_validly_signed_payload_naming_a_forbidden_class_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    signed = decode(
        encode(
            snapshot(payload=pickle.dumps(RunsCode(marker)), challenger_payload=pickle.dumps(RunsCode(marker))), KEYRING
        ),
        KEYRING,
    )
    with pytest.raises(ForbiddenPayload, match="key 'k' v1: model payload refused: the payload names posix.system"):
        signed.model()
    with pytest.raises(ForbiddenPayload, match="challenger payload refused"):
        signed.challenger()
    assert not marker.exists()


class RunsCode:
    """A pickle that runs a shell command when loaded: it would create `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_keys_rotate_an_envelope_of_the_old_key_verifies_while_both_are_accepted():
    old, new = b"o" * 32, b"n" * 32
    envelope = encode(snapshot(), Keyring({"2024": old}, "2024"))
    assert decode(envelope, Keyring({"2024": old, "2025": new}, "2025")).key_id == "2024"
    with pytest.raises(EnvelopeSignatureError, match="key '2024', which is not among the accepted keys \\(2025\\)"):
        decode(envelope, Keyring({"2025": new}, "2025"))


def test_envelopes_order_by_generation_then_version():
    assert snapshot(generation=2, model_version=1).order > snapshot(generation=1, model_version=250).order
    assert decode(encode(snapshot(generation=5), KEYRING), KEYRING).generation == 5


def test_schema_hash_depends_on_names_and_order():
    assert feature_schema_hash(["a", "b"]) != feature_schema_hash(["b", "a"])
    assert feature_schema_hash(["a", "b"]) != feature_schema_hash(["ab"])


def signed(meta: bytes, body: bytes) -> bytes:
    """Envelope bytes around any metadata, signed with the test key."""
    unsigned = struct.pack(">4sBI", b"RTML", 3, len(meta)) + meta + body
    return unsigned + KEYRING.sign(unsigned)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "too short"),
        (b"PK\x03\x04 some zip file", "not a model snapshot envelope"),
        (b"RTML\x09\x00\x00\x00\x02{}", "unsupported envelope format version 9"),
        (b"RTML\x03\x00\x00\x01\x00{}", "truncated envelope"),
        (b"RTML\x03\x00\x00\x00\x02[}" + bytes(32), "corrupt envelope metadata"),
        (b"RTML\x03\x00\x00\x00\x02[]" + bytes(32), "an object expected, got list"),
        (b"RTML\x03\x00\x00\x00\x02{}" + bytes(32), "signed with key None"),
        (signed(b'{"key_id":"test","challenger_bytes":99}', b"xx"), "challenger_bytes 99 does not fit"),
        (signed(b'{"key_id":"test"}', b""), "corrupt envelope metadata"),
    ],
)
def test_foreign_or_damaged_bytes_raise_a_clear_error(data, message):
    with pytest.raises(EnvelopeError, match=message):
        decode(data, KEYRING)


def test_a_payload_that_does_not_unpickle_names_the_key_and_version():
    broken = decode(encode(snapshot(payload=b"not a pickle"), KEYRING), KEYRING)
    with pytest.raises(EnvelopeError, match="key 'k' v1: model payload does not load"):
        broken.model()


def test_a_model_pickle_refuses_is_cloudpickled_and_loads_only_where_cloudpickle_is_allowed():
    from river import compose

    model = compose.FuncTransformer(lambda x: {"double": 2 * x["a"]}) | linear_model.LinearRegression()
    decoded = decode(encode(snapshot(payload=dump_model(model)), KEYRING), KEYRING)
    with pytest.raises(ForbiddenPayload, match="payload names cloudpickle"):
        decoded.model()
    with pytest.raises(ValueError, match="can be carried only by cloudpickle .* snapshots.allow_cloudpickle: true"):
        ModelClasses.of([model])
    restored = decoded.model(ModelClasses.of([model], allow_cloudpickle=True))
    assert list(restored.steps.values())[0].transform_one({"a": 2}) == {"double": 4}


def test_format_4_names_each_features_type_and_format_3_decodes_with_none():
    typed = snapshot(feature_types={"a": "string", "b": "boolean"})
    decoded = decode(encode(typed, KEYRING), KEYRING)
    assert (decoded.format_version, decoded.feature_types) == (4, {"a": "string", "b": "boolean"})
    # A format 3 envelope, as the jobs before typed features wrote it: no feature_types in its metadata.
    meta = {**snapshot(format_version=3).metadata(), "key_id": "test", "challenger_bytes": 0}
    del meta["feature_types"]
    meta = json.dumps(meta, separators=(",", ":")).encode()
    signed = struct.pack(">4sBI", b"RTML", 3, len(meta)) + meta + typed.payload
    old = decode(signed + KEYRING.sign(signed), KEYRING)
    assert (old.format_version, old.feature_types) == (3, {})


@pytest.mark.parametrize("types", [{"a": "date"}, ["number"], {"a": None}])
def test_feature_types_that_are_not_a_schema_are_corrupt(types):
    with pytest.raises(EnvelopeError, match="corrupt envelope metadata: feature_types must map each feature"):
        decode(encode(snapshot(feature_types=types), KEYRING), KEYRING)
