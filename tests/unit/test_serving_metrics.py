"""The Prometheus text a replica exposes: what scrapers parse, exactly."""

import threading

from serving.metrics import Counter, Gauge, Histogram, render


def test_a_value_on_a_bucket_bound_counts_in_that_bucket():
    h = Histogram("freshness_seconds", "Freshness.", [1, 0.5])  # any order in the config
    for value in (0.5, 1.0, 1.25):
        h.observe(value)
    assert render([h]).splitlines() == [
        "# HELP freshness_seconds Freshness.",
        "# TYPE freshness_seconds histogram",
        'freshness_seconds_bucket{le="0.5"} 1',
        'freshness_seconds_bucket{le="1.0"} 2',
        'freshness_seconds_bucket{le="+Inf"} 3',
        "freshness_seconds_sum 2.75",
        "freshness_seconds_count 3",
    ]


def test_label_values_are_escaped():
    c = Counter("requests_total", "Requests.", labels=("path",))
    c.inc(path='a"b\\c\nd')
    assert 'requests_total{path="a\\"b\\\\c\\nd"} 1.0' in render([c])


def test_counters_lose_no_increment_across_threads():
    c = Counter("applied_total", "Applied.", labels=("reason",))

    def count():
        for _ in range(10_000):
            c.inc(reason="x")

    threads = [threading.Thread(target=count) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.value(reason="x") == 40_000


def test_a_gauge_shows_its_last_value():
    g = Gauge("consumer_lag", "Lag.")
    g.set(7)
    g.set(0)
    assert render([g]).endswith("consumer_lag 0.0\n")
