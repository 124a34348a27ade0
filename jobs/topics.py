"""Create the Kafka topics that config files declare under `topics:`.

Each entry names a topic and, optionally, its partitions, replication factor and topic configs; what an
entry leaves out comes from `kafka.replication_factor` and `kafka.topic_config` (1 and
min.insync.replicas 1 for the one local broker; 3 and 2 on a cluster of three brokers or more):

    kafka:
      replication_factor: 3
      topic_config: {min.insync.replicas: 2}
    topics:
      snapshots: {name: model-snapshots, partitions: 4, config: {cleanup.policy: compact}}

>>> from jobs.config import Config
>>> [topic] = declared_topics(Config({"kafka": {"replication_factor": 3, "topic_config": {"min.insync.replicas": 2}},
...     "topics": {"s": {"name": "s", "partitions": 4, "config": {"cleanup.policy": "compact"}}}}, "job.yaml"))
>>> topic.num_partitions, topic.replication_factor, topic.topic_configs
(4, 3, {'min.insync.replicas': '2', 'cleanup.policy': 'compact'})

Run as `python -m jobs.topics conf/*.yaml` (each config's `kafka.bootstrap_servers`, unless
`--bootstrap-servers` says otherwise); topics that exist already are left as they are.
"""

from __future__ import annotations

import argparse
import sys

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import InvalidReplicationFactorError, TopicAlreadyExistsError

from jobs.config import Config, ConfigError, load_config, whole_number


class TopicError(RuntimeError):
    """A declared topic the cluster cannot create as declared."""


def declared_topics(config: Config) -> list[NewTopic]:
    """The topics under `topics:`, with the replication factor and topic configs that apply to each;
    a wrong value names its setting."""
    replication = whole_number(config, "kafka.replication_factor", 1, minimum=1)
    shared = config.get("kafka.topic_config", None) or {}
    if not isinstance(shared, dict):
        raise config.error("kafka.topic_config", f"must be a mapping of topic configs, not {shared!r}")
    topics = []
    for alias, spec in (config.get("topics", {}) or {}).items():
        if not isinstance(spec, dict) or "name" not in spec:
            raise config.error(f"topics.{alias}", "needs a mapping with at least 'name'")
        factor = whole_number(config, f"topics.{alias}.replication_factor", replication, minimum=1)
        own = spec.get("config") or {}
        if not isinstance(own, dict):
            raise config.error(f"topics.{alias}.config", f"must be a mapping of topic configs, not {own!r}")
        configs = {k: str(v) for k, v in {**shared, **own}.items()}
        # Kafka accepts such a topic, and then refuses every acks=all write to it (the job's sinks): say so now.
        insync = configs.get("min.insync.replicas")
        if insync is not None and (not insync.isdigit() or int(insync) > factor):
            where = f"topics.{alias}.config" if "min.insync.replicas" in own else "kafka.topic_config"
            raise config.error(
                f"{where}.min.insync.replicas",
                f"must be a whole number no larger than topic {spec['name']!r}'s replication "
                f"factor ({factor}), not {insync}: no write with acks=all could succeed",
            )
        topics.append(
            NewTopic(
                name=spec["name"],
                num_partitions=whole_number(config, f"topics.{alias}.partitions", 1, minimum=1),
                replication_factor=factor,
                topic_configs=configs,
            )
        )
    return topics


def ensure_topics(bootstrap_servers: str, topics: list[NewTopic]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. A replication factor larger
    than the cluster's brokers raises TopicError naming the topic, the brokers and the settings, before
    any topic is created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="topics-setup")
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if any(t.replication_factor > 1 for t in missing):
            brokers = len(admin.describe_cluster()["brokers"])
            for topic in missing:
                if topic.replication_factor > brokers:
                    raise _too_few_brokers(topic, bootstrap_servers, brokers)
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
            except InvalidReplicationFactorError:  # brokers left since they were counted
                raise _too_few_brokers(topic, bootstrap_servers, len(admin.describe_cluster()["brokers"])) from None
        return created
    finally:
        admin.close()


def _too_few_brokers(topic: NewTopic, bootstrap_servers: str, brokers: int) -> TopicError:
    return TopicError(
        f"topic {topic.name!r}: replication factor {topic.replication_factor} needs as many brokers, "
        f"and the cluster at {bootstrap_servers} has {brokers}; lower kafka.replication_factor (or "
        f"the topic's replication_factor under topics:) in the config, or add brokers"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="YAML config files with a 'topics' section")
    parser.add_argument(
        "--bootstrap-servers",
        default=None,
        help="the cluster to create them on (default: each config's kafka.bootstrap_servers)",
    )
    args = parser.parse_args(argv)
    try:
        configs = [load_config(path) for path in args.configs]
        plan = [
            (args.bootstrap_servers or config.get("kafka.bootstrap_servers", "127.0.0.1:9092"), declared_topics(config))
            for config in configs
        ]
        created = [name for servers, topics in plan for name in ensure_topics(servers, topics)]
    except (ConfigError, TopicError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    declared = sum(len(topics) for _, topics in plan)
    print(f"topics: {declared} declared, {len(created)} created" + (f": {', '.join(created)}" if created else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
