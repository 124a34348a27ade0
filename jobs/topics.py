"""Create the Kafka topics that config files declare under `topics:`.

Each entry names a topic and, optionally, its partitions and topic configs:

    topics:
      snapshots: {name: model-snapshots, partitions: 4, config: {cleanup.policy: compact}}

Run as `python -m jobs.topics conf/*.yaml`; topics that exist already are left as they are.
"""

from __future__ import annotations

import argparse
import sys

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from jobs.config import Config, ConfigError, load_config


def declared_topics(config: Config) -> list[NewTopic]:
    topics = []
    for alias, spec in (config.get("topics", {}) or {}).items():
        if not isinstance(spec, dict) or "name" not in spec:
            raise config.error(f"topics.{alias}", "needs a mapping with at least 'name'")
        topics.append(
            NewTopic(
                name=spec["name"],
                num_partitions=int(spec.get("partitions", 1)),
                replication_factor=1,
                topic_configs={k: str(v) for k, v in (spec.get("config") or {}).items()},
            )
        )
    return topics


def ensure_topics(bootstrap_servers: str, topics: list[NewTopic]) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="topics-setup")
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="YAML config files with a 'topics' section")
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    args = parser.parse_args(argv)
    try:
        topics = [t for path in args.configs for t in declared_topics(load_config(path))]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    created = ensure_topics(args.bootstrap_servers, topics)
    print(f"topics: {len(topics)} declared, {len(created)} created" + (f": {', '.join(created)}" if created else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
