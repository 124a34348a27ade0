"""The snapshot envelope codec: round trips, and clear errors for foreign or damaged bytes."""

import dataclasses

import pytest
from river import datasets, linear_model, preprocessing

from udfs.envelope import EnvelopeError, Snapshot, decode, dump_model, encode, feature_schema_hash


def trained_model():
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in datasets.Phishing().take(50):
        model.learn_one(x, y)
    return model


def snapshot(**changes):
    base = Snapshot(key="k", model_version=7, n_learned=7, metric_name="Accuracy", metric_value=0.5,
                    window_end_ms=1000, watermark_ms=999, emitted_at_ms=1500,
                    feature_schema_hash=feature_schema_hash(["a", "b"]), payload=dump_model(trained_model()))
    return dataclasses.replace(base, **changes)


def test_round_trip_keeps_metadata_and_model_predictions():
    original = snapshot(extra={"drift": True})
    decoded = decode(encode(original))
    assert decoded.metadata() == original.metadata()
    x = next(iter(datasets.Phishing().take(60)))[0]
    assert decoded.model().predict_proba_one(x) == trained_model().predict_proba_one(x)


def test_challenger_payload_travels_after_the_model():
    challenger = linear_model.LinearRegression()
    original = snapshot(challenger_payload=dump_model(challenger), extra={"challenger": {"metric_value": 0.4}})
    decoded = decode(encode(original))
    assert decoded.metadata() == original.metadata()
    assert type(decoded.model()).__name__ == "Pipeline"
    assert type(decoded.challenger()).__name__ == "LinearRegression"
    assert decode(encode(snapshot())).challenger() is None


def test_format_1_envelopes_from_older_jobs_still_decode():
    old = snapshot(format_version=1)
    decoded = decode(_format_1_bytes(old))
    assert decoded.model_version == 7 and decoded.challenger() is None and decoded.payload == old.payload


def _format_1_bytes(s):
    import json
    import struct
    meta = json.dumps(s.metadata(), separators=(",", ":")).encode()
    return struct.pack(">4sBI", b"RTML", 1, len(meta)) + meta + s.payload


def test_schema_hash_depends_on_names_and_order():
    assert feature_schema_hash(["a", "b"]) != feature_schema_hash(["b", "a"])
    assert feature_schema_hash(["a", "b"]) != feature_schema_hash(["ab"])


@pytest.mark.parametrize("data, message", [
    (b"", "too short"),
    (b"PK\x03\x04 some zip file", "not a model snapshot envelope"),
    (b"RTML\x09\x00\x00\x00\x02{}", "unsupported envelope format version 9"),
    (b'RTML\x02\x00\x00\x00\x17{"challenger_bytes":99}xx', "challenger_bytes 99 does not fit"),
    (b"RTML\x01\x00\x00\x01\x00{}", "truncated envelope"),
    (b"RTML\x01\x00\x00\x00\x02[}", "corrupt envelope metadata"),
    (b"RTML\x01\x00\x00\x00\x02{}", "corrupt envelope metadata"),
])
def test_foreign_or_damaged_bytes_raise_a_clear_error(data, message):
    with pytest.raises(EnvelopeError, match=message):
        decode(data)


def test_a_payload_that_does_not_unpickle_names_the_key_and_version():
    broken = decode(encode(snapshot(payload=b"not a pickle")))
    with pytest.raises(EnvelopeError, match="key 'k' v7: model payload does not load"):
        broken.model()


def test_a_model_pickle_refuses_is_cloudpickled():
    from river import compose
    model = compose.FuncTransformer(lambda x: {"double": 2 * x["a"]}) | linear_model.LinearRegression()
    restored = decode(encode(snapshot(payload=dump_model(model)))).model()
    assert list(restored.steps.values())[0].transform_one({"a": 2}) == {"double": 4}
