"""Topics created from the config on the real broker, with the replication settings a cluster needs:
the local single broker takes replication factor 1 and min.insync.replicas 1; a factor larger than the
brokers is refused with an error naming the topic, the brokers and the setting, and nothing is created.

These tests need only the broker on 127.0.0.1:9092.
"""

import uuid

import pytest
import yaml
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from jobs.config import load_config
from jobs.topics import TopicError, declared_topics, ensure_topics, main
from scripts import stack


@pytest.fixture
def admin(services):
    """An admin client of the real broker; deletes the topics a test names in `admin.created`."""
    client = KafkaAdminClient(bootstrap_servers=stack.BOOTSTRAP, client_id="test-topics")
    client.created = []
    yield client
    existing = set(client.list_topics())
    doomed = [name for name in client.created if name in existing]
    if doomed:
        client.delete_topics(doomed)
    client.close()


def topic_configs(admin, name: str) -> dict:
    """The topic's configs as the broker reports them, {name: value}."""
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)], config_filter="All")
    return {key: entry["value"] for key, entry in described["topic"][name].items()}


def replication(admin, name: str) -> list[int]:
    """The number of replicas of each partition of the topic."""
    [topic] = admin.describe_topics([name])
    return [len(p["replica_nodes"]) for p in topic["partitions"]]


@pytest.mark.timeout(60)
def test_the_jobs_topics_are_created_with_their_replication_settings(admin, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/job.yaml")  # creates them, as scripts/kafka.sh does
    declared = declared_topics(config)
    admin.created += [t.name for t in declared]
    assert {t.name for t in declared} <= set(admin.list_topics())
    for topic in declared:
        assert replication(admin, topic.name) == [1] * topic.num_partitions, topic.name
        configs = topic_configs(admin, topic.name)
        assert configs["min.insync.replicas"] == "1", topic.name
    assert topic_configs(admin, config["topics.snapshots.name"])["cleanup.policy"] == "compact"
    assert ensure_topics(stack.BOOTSTRAP, declared) == []  # a second run leaves them as they are


@pytest.mark.timeout(60)
def test_a_replication_factor_above_the_brokers_is_a_clear_error_and_creates_nothing(admin, tmp_path, capsys):
    suffix = uuid.uuid4().hex[:8]
    events, drifts = f"events-{suffix}", f"drifts-{suffix}"
    admin.created += [events, drifts]
    path = tmp_path / "conf" / "cluster.yaml"
    path.parent.mkdir()
    path.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrap_servers": stack.BOOTSTRAP,
                    "replication_factor": 3,
                    "topic_config": {"min.insync.replicas": 2},
                },
                "topics": {
                    "events": {"name": events, "partitions": 2},
                    "drifts": {"name": drifts, "replication_factor": 1, "config": {"min.insync.replicas": 1}},
                },
            }
        )
    )
    declared = declared_topics(load_config(str(path)))
    with pytest.raises(
        TopicError,
        match=rf"topic '{events}': replication factor 3 needs as many brokers, and the "
        rf"cluster at {stack.BOOTSTRAP} has 1; lower kafka.replication_factor",
    ):
        ensure_topics(stack.BOOTSTRAP, declared)
    assert not {events, drifts} & set(admin.list_topics())  # checked before any is created

    # The command scripts/kafka.sh runs says so and fails.
    assert main([str(path)]) == 2
    assert f"error: topic '{events}': replication factor 3 needs as many brokers" in capsys.readouterr().err

    # A topic the same config gives one replica is created as declared.
    assert ensure_topics(stack.BOOTSTRAP, [t for t in declared if t.name == drifts]) == [drifts]
    assert replication(admin, drifts) == [1] and topic_configs(admin, drifts)["min.insync.replicas"] == "1"
