"""Replicas holding a subset of the partitions: where a key lives (as Kafka's producers place it), the
setting, the follower's checks of the topics, and the answers for keys living elsewhere."""

import os
import re

import pytest
from kafka.cluster import ClusterMetadata
from kafka.partitioner.default import DefaultPartitioner, murmur2
from kafka.protocol.metadata import MetadataResponse

from jobs.config import Config, ConfigError, load_config
from serving.follower import PartitioningError, partitions_to_follow
from serving.partitions import KeyPartitions, PartitionsUnknown, WrongReplica, held_partitions, partition_of
from serving.requests import NotFound, predict, predict_batch, recommend
from serving.settings import ServingSettings
from tests.unit.models import PROJECT_DIR, trained
from tests.unit.test_serving import serving_with, snapshot
from udfs.feature_records import FeatureRow

KEYS = [f"book-{i}" for i in range(200)] + ["", "ü/ключ", "a" * 300]


def cluster_with(topic: str, partitions: int) -> ClusterMetadata:
    """kafka-python's own cluster metadata, as a broker's metadata answer fills it, for its partitioner."""
    topic_type = MetadataResponse.MetadataResponseTopic
    cluster = ClusterMetadata()
    cluster.update_metadata(
        MetadataResponse(
            version=0,
            brokers=[(0, "broker", 9092)],
            topics=[
                topic_type(
                    version=0,
                    error_code=0,
                    name=topic,
                    partitions=[
                        topic_type.MetadataResponsePartition(
                            version=0, error_code=0, partition_index=p, leader_id=0, replica_nodes=[0], isr_nodes=[0]
                        )
                        for p in range(partitions)
                    ],
                )
            ],
        )
    )
    return cluster


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 7, 12])
def test_a_key_lives_where_kafka_pythons_producer_partitioner_puts_it(partitions):
    cluster, partitioner = cluster_with("snapshots", partitions), DefaultPartitioner()
    placed = {key: partitioner.partition("snapshots", key, key.encode(), None, None, cluster) for key in KEYS}
    assert {key: partition_of(key, partitions) for key in KEYS} == placed
    if partitions > 1:
        assert len(set(placed.values())) == partitions  # 200 keys reach every partition


def test_murmur2_matches_the_java_clients_test_vectors():
    # From Kafka's UtilsTest.testMurmur2 (signed Java ints): the Flink sinks use the Java client.
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"abc": 479470107,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    }
    assert {data: murmur2(data) - (1 << 32 if murmur2(data) >= 1 << 31 else 0) for data in cases} == cases


@pytest.mark.parametrize("value", [[], [-1], [0, 0], [True], ["a"], [1.0], "0,1", 3])
def test_a_bad_partitions_setting_names_it(value):
    with pytest.raises(ConfigError, match=re.escape("job.yaml: 'serving.partitions' must be null")):
        ServingSettings.from_config(Config({"serving": {"partitions": value}}, "job.yaml"))


@pytest.mark.parametrize("option", ["", "0,,1", "a", "-1", "1,1"])
def test_a_bad_partitions_option_names_it(option):
    with pytest.raises(ConfigError, match="^--partitions must be a list of distinct partition numbers"):
        held_partitions(None, option)


def test_the_option_overrides_the_setting():
    configured = ServingSettings.from_config(Config({"serving": {"partitions": [0]}}, "job.yaml")).partitions
    assert held_partitions(configured) == {0} and held_partitions(configured, " 2, 3") == {2, 3}


def test_the_follower_follows_the_held_partitions_of_both_topics_only_when_they_are_partitioned_alike():
    assert partitions_to_follow({"s": 2, "f": 2}, None) == {"s": [0, 1], "f": [0, 1]}
    assert partitions_to_follow({"s": 4, "f": 4}, frozenset({3, 0})) == {"s": [0, 3], "f": [0, 3]}
    with pytest.raises(PartitioningError, match="s has 4 partitions, f 2"):
        partitions_to_follow({"s": 4, "f": 2}, frozenset({0}))
    with pytest.raises(PartitioningError, match=r"partition\(s\) 4, 5 do not exist; the topics have 4 partitions"):
        partitions_to_follow({"s": 4, "f": 4}, frozenset({1, 4, 5}))


def test_the_jobs_snapshot_and_features_topics_are_keyed_and_partitioned_alike():
    config = load_config(os.path.join(PROJECT_DIR, "conf", "job.yaml"))
    assert config["topics.snapshots.partitions"] == config["topics.features.partitions"]
    assert config["serving.partitions"] is None  # every replica holds every key unless told otherwise
    for name in ("snapshots.sql", "latest_features.sql"):
        with open(os.path.join(PROJECT_DIR, "sql", name)) as f:
            ddl = f.read()
        assert "'key.fields' = 'model_key'" in ddl and "'key.format' = 'raw'" in ddl, name
        assert "'sink.partitioner' = 'default'" in ddl, name


def held_serving(held, count=4, fallback_key=None):
    """A replica's answers holding `held` of `count` partitions: a model and features for every key of
    KEYS[:40] living there."""
    mine = [key for key in KEYS[:40] if partition_of(key, count) in held]
    serving = serving_with(
        *[snapshot(key, 1, trained(5)) for key in mine],
        fallback_key=fallback_key,
        rows=[FeatureRow(key, 1_000, "h", {"x1": 0.1, "x2": 0.2}) for key in mine],
    )
    serving.partitions = KeyPartitions(frozenset(held), "model-snapshots", count)
    return serving, mine


def test_a_key_living_elsewhere_is_answered_421_naming_its_partition_and_a_held_one_as_before():
    serving, mine = held_serving({0, 1})
    assert mine and predict(serving, {"key": mine[0]})["model_version"] == 1
    other = next(key for key in KEYS if partition_of(key, 4) == 3)
    with pytest.raises(WrongReplica) as refused:
        predict(serving, {"key": other})
    assert refused.value.status == 421 and refused.value.fields == {"partition": 3, "partitions": 4}
    assert f"key '{other}' is on partition 3 of model-snapshots (4 partitions)" in str(refused.value)
    with pytest.raises(WrongReplica):  # features sent change nothing: its model is elsewhere
        predict(serving, {"key": other, "features": {"x1": 0.0, "x2": 0.0}})
    # A held key with no model yet is still a 404: this is the right replica.
    held_new = next(key for key in KEYS[40:] if partition_of(key, 4) == 0)
    with pytest.raises(NotFound):
        predict(serving, {"key": held_new})

    answers = predict_batch(serving, {"requests": [{"key": mine[0]}, {"key": other}]})["results"]
    assert answers[0]["model_version"] == 1
    assert answers[1]["status"] == 421 and answers[1]["partition"] == 3


def test_the_fallback_answers_only_for_keys_living_on_held_partitions():
    serving, mine = held_serving({0, 1}, fallback_key=None)
    serving.fallback_key = mine[0]
    held_new = next(key for key in KEYS[40:] if partition_of(key, 4) in (0, 1))
    assert predict(serving, {"key": held_new, "features": {"x1": 0.0, "x2": 0.0}})["fallback"] is True
    elsewhere = next(key for key in KEYS[40:] if partition_of(key, 4) == 2)
    with pytest.raises(WrongReplica):
        predict(serving, {"key": elsewhere, "features": {"x1": 0.0, "x2": 0.0}})


def test_recommend_lists_candidates_living_elsewhere_by_partition():
    serving, mine = held_serving({2, 3})
    others = [key for key in KEYS[:40] if partition_of(key, 4) in (0, 1)]
    answer = recommend(serving, {"n": 3, "candidates": mine + others})
    assert len(answer["ranking"]) == 3 and {r["key"] for r in answer["ranking"]} <= set(mine)
    assert answer["unscored"] == []
    assert answer["elsewhere"] == {
        str(p): [k for k in others if partition_of(k, 4) == p]
        for p in (0, 1)
        if any(partition_of(k, 4) == p for k in others)
    }
    assert "elsewhere" not in recommend(serving_with(), {"candidates": others})  # every partition: as before


def test_before_the_partition_count_is_known_a_key_without_a_model_is_a_503():
    serving, _ = held_serving({0})
    serving.partitions.count = None
    with pytest.raises(PartitionsUnknown, match="partitions of model-snapshots are not known") as unknown:
        predict(serving, {"key": "book-new"})
    assert unknown.value.status == 503
