"""A seeded bookstore: users view and buy books; a new book is released and becomes a hit.

    python scripts/bookstore_events.py --seconds 60 --rate 300 --release-at 20   # produces to Kafka

`Bookstore.event(elapsed_s, now_ms)` is the generator itself, free of Kafka, so a story can be rehearsed offline.
"""

from __future__ import annotations

import argparse
import json
import random
import time

NEW_BOOK = "the-new-hit"


class Bookstore:
    """Books with Zipf-like popularity; after `release_at_s` the new book draws `hit_factor` times
    the attention of the most popular book and converts views into purchases three times as well."""

    def __init__(self, seed: int = 7, n_books: int = 20, n_users: int = 500, release_at_s: float = 20.0,
                 hit_factor: float = 3.0, conversion: float = 0.1):
        self.random = random.Random(seed)
        self.books = [f"book-{i:02d}" for i in range(n_books)]
        self.weights = [1.0 / (i + 1) for i in range(n_books)]
        self.users = [f"user-{i:03d}" for i in range(n_users)]
        self.release_at_s, self.hit_factor, self.conversion = release_at_s, hit_factor, conversion
        self.first_purchase_of_new_book_ms: int | None = None

    def event(self, elapsed_s: float, now_ms: int) -> dict:
        books, weights = self.books, self.weights
        if elapsed_s >= self.release_at_s:
            books, weights = books + [NEW_BOOK], weights + [self.hit_factor * max(weights)]
        book = self.random.choices(books, weights)[0]
        conversion = self.conversion * (3 if book == NEW_BOOK else 1)
        action = "purchase" if self.random.random() < conversion else "view"
        if book == NEW_BOOK and action == "purchase" and self.first_purchase_of_new_book_ms is None:
            self.first_purchase_of_new_book_ms = now_ms
        return {"user": self.random.choice(self.users), "book": book, "action": action, "ts": now_ms}


def produce(store: Bookstore, producer, topic: str, seconds: float, rate: float, stop=None) -> int:
    """Produce `rate` events a second for `seconds`, stamped with the wall clock; returns the count."""
    started, sent = time.monotonic(), 0
    while (elapsed := time.monotonic() - started) < seconds and not (stop and stop.is_set()):
        due = int(elapsed * rate)
        while sent < due:
            event = store.event(elapsed, int(time.time() * 1000))
            producer.send(topic, key=event["book"].encode(), value=json.dumps(event).encode())
            sent += 1
        time.sleep(0.02)
    producer.flush()
    return sent


def main(argv=None):
    from kafka import KafkaProducer

    from jobs.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/bookstore.yaml")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=300, help="events per second")
    parser.add_argument("--release-at", type=float, default=20, help="seconds until the new book appears")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    producer = KafkaProducer(bootstrap_servers=config["kafka.bootstrap_servers"], linger_ms=5)
    sent = produce(Bookstore(seed=args.seed, release_at_s=args.release_at), producer,
                   config["topics.events.name"], args.seconds, args.rate)
    print(f"produced {sent} events to {config['topics.events.name']}")


if __name__ == "__main__":
    main()
