"""Kafka -> Flink SQL (DDL from sql/smoke, a Python UDF) -> Kafka, through the real broker and cluster."""

import json

import pytest

from scripts import stack


@pytest.mark.timeout(240)
def test_every_event_comes_back_transformed(services, flink_job, tmp_path):
    config = stack.isolated_config(tmp_path, "conf/smoke.yaml")
    events = [{"id": i, "user": f"  User-{i % 7} ", "amount": i * 0.25} for i in range(500)]
    flink_job("jobs/smoke_job.py", "--config", config.source)

    stack.produce_json(config["topics.events.name"], events)
    records = stack.read_topic(config["topics.transformed.name"], expected=len(events), timeout_s=90)

    got = {r["id"]: r for r in (json.loads(m.value) for m in records)}
    assert len(records) == len(events)
    assert got == {
        e["id"]: {"id": e["id"], "user_key": f"user-{e['id'] % 7}", "amount_doubled": e["amount"] * 2} for e in events
    }
