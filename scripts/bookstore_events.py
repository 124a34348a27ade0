"""A seeded bookstore: users view and buy books; a new book is released and becomes a hit, the most
popular one goes quiet, and a long tail of books sells now and then.

    python scripts/bookstore_events.py --seconds 60 --rate 300 --release-at 20 --quiet-at 40   # produces to Kafka

`Bookstore.event(elapsed_s, now_ms)` is the generator itself, free of Kafka, so a story can be rehearsed offline.

>>> store = Bookstore(release_at_s=1.0, quiet_at_s=2.0)
>>> before = {store.event(0.5, 500)["book"] for _ in range(2000)}
>>> after = {store.event(2.5, 2500)["book"] for _ in range(2000)}
>>> (NEW_BOOK in before, NEW_BOOK in after, QUIET_BOOK in before, QUIET_BOOK in after,
...  store.last_event_of_quiet_book_ms)
(False, True, True, False, 500)
>>> sorted(store.tail_event_ms)[:2], len(store.tail_event_ms)
(['tail-0', 'tail-1'], 4)
"""

from __future__ import annotations

import argparse
import json
import random
import time

NEW_BOOK = "the-new-hit"
# The most popular book: no more views or purchases after `quiet_at_s`.
QUIET_BOOK = "book-00"


class Bookstore:
    """Books with Zipf-like popularity; after `release_at_s` the new book draws `hit_factor` times
    the attention of the most popular book and converts views into purchases three times as well;
    after `quiet_at_s` the most popular book (QUIET_BOOK) gets no more events. `tail_books` books
    draw `tail_weight` of the most popular one's attention each: at 300 events a second, an event
    in about every other 2 s window, so many of their windows have no row."""

    def __init__(
        self,
        seed: int = 7,
        n_books: int = 20,
        n_users: int = 500,
        release_at_s: float = 20.0,
        hit_factor: float = 3.0,
        conversion: float = 0.1,
        quiet_at_s: float = float("inf"),
        tail_books: int = 4,
        tail_weight: float = 0.005,
    ):
        self.random = random.Random(seed)
        self.books = [f"book-{i:02d}" for i in range(n_books)] + [f"tail-{i}" for i in range(tail_books)]
        self.weights = [1.0 / (i + 1) for i in range(n_books)] + [tail_weight] * tail_books
        self.users = [f"user-{i:03d}" for i in range(n_users)]
        self.release_at_s, self.hit_factor, self.conversion = release_at_s, hit_factor, conversion
        self.quiet_at_s = quiet_at_s
        self.first_purchase_of_new_book_ms: int | None = None
        self.last_event_of_quiet_book_ms: int | None = None
        # When each long-tail book had events (ms), to count the windows it has rows in.
        self.tail_event_ms: dict[str, list] = {book: [] for book in self.books if book.startswith("tail-")}

    def event(self, elapsed_s: float, now_ms: int) -> dict:
        books, weights = self.books, self.weights
        if elapsed_s >= self.release_at_s:
            books, weights = books + [NEW_BOOK], weights + [self.hit_factor * max(weights)]
        if elapsed_s >= self.quiet_at_s:
            weights = [0.0 if book == QUIET_BOOK else w for book, w in zip(books, weights)]
        book = self.random.choices(books, weights)[0]
        conversion = self.conversion * (3 if book == NEW_BOOK else 1)
        action = "purchase" if self.random.random() < conversion else "view"
        if book == NEW_BOOK and action == "purchase" and self.first_purchase_of_new_book_ms is None:
            self.first_purchase_of_new_book_ms = now_ms
        if book == QUIET_BOOK:
            self.last_event_of_quiet_book_ms = now_ms
        if book in self.tail_event_ms:
            self.tail_event_ms[book].append(now_ms)
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
    parser.add_argument("--quiet-at", type=float, default=40, help=f"seconds until {QUIET_BOOK} goes quiet")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    producer = KafkaProducer(bootstrap_servers=config["kafka.bootstrap_servers"], linger_ms=5)
    sent = produce(
        Bookstore(seed=args.seed, release_at_s=args.release_at, quiet_at_s=args.quiet_at),
        producer,
        config["topics.events.name"],
        args.seconds,
        args.rate,
    )
    print(f"produced {sent} events to {config['topics.events.name']}")


if __name__ == "__main__":
    main()
