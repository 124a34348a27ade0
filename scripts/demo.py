"""The bookstore story, end to end: a new book becomes a hit, and within a couple of windows of its
first purchases the serving replicas already rank it near the top; the most popular book goes quiet
and leaves the top within two windows; long-tail books, with no row in many windows, learn every row.

    .venv/bin/python scripts/demo.py            # needs Kafka and Flink running (scripts/run.sh starts them)

It submits the learner job with conf/bookstore.yaml (on topics of its own), starts two serving
replicas, produces the story's events in real time, asks a replica for recommendations twice a
second, and at the end prints how long after its first purchase the new book entered the top N and
writes run/demo/bookstore.png: freshness per snapshot and the new book's rank over time.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid

from kafka import KafkaProducer

from jobs.config import derive_config, load_config
from jobs.topics import declared_topics, ensure_topics
from scripts import stack
from scripts.bookstore_events import NEW_BOOK, QUIET_BOOK, Bookstore, produce


def rank_of(ranking: list, key: str):
    keys = [item["key"] for item in ranking]
    return keys.index(key) + 1 if key in keys else None


def run_story(
    config, replicas, seconds: float, rate: float, release_at: float, top_n: int, quiet_at: float, log=print
) -> dict:
    """Produce the story and watch serving; returns what was observed, rank and freshness over time."""
    store = Bookstore(release_at_s=release_at, quiet_at_s=quiet_at)
    producer = KafkaProducer(bootstrap_servers=config["kafka.bootstrap_servers"], linger_ms=5)
    stop = threading.Event()
    story = threading.Thread(target=produce, args=(store, producer, config["topics.events.name"], seconds, rate, stop))
    started = time.time()
    story.start()
    ranks, freshness, versions, tops = [], [], {}, []
    entered_at = before = after = None
    next_log = 0.0
    while story.is_alive():
        now = time.time()
        recommended = replicas[0].http("POST", "/recommend", {"user": "user-001", "n": 50})[1]
        ranking = recommended["ranking"]
        rank = rank_of(ranking, NEW_BOOK)
        ranks.append((now - started, rank))
        tops.append((now, recommended["window_end_ms"], [item["key"] for item in ranking[:top_n]]))
        for key in [item["key"] for item in ranking]:
            model = replicas[-1].http("GET", f"/models/{key}")[1]
            if model.get("model_version", 0) > versions.get(key, 0):
                versions[key] = model["model_version"]
                freshness.append((now - started, model["freshness_s"]))
        first_purchase = store.first_purchase_of_new_book_ms
        if before is None and now - started >= release_at - 1:
            before = [item["key"] for item in ranking[:top_n]]
        if entered_at is None and first_purchase and rank is not None and rank <= top_n:
            entered_at = now
            after = [item["key"] for item in ranking[:top_n]]
        if now - started >= next_log:
            top = ", ".join(item["key"] for item in ranking[:top_n])
            log(f"  t={now - started:4.1f}s  {NEW_BOOK}: rank {rank or '-':>2}   top {top_n}: {top}")
            next_log += 2
        time.sleep(0.5)
    story.join()
    producer.close()
    first_purchase = store.first_purchase_of_new_book_ms
    seconds_to_top = entered_at - first_purchase / 1000 if entered_at and first_purchase else None
    window_ms = int(float(config["window.size_seconds"]) * 1000)
    # The watermark stops at the last event's time less its delay: windows before this one have closed.
    closed_through = (
        int(time.time() * 1000) - int(float(config["source.watermark_delay_seconds"]) * 1000)
    ) // window_ms
    time.sleep(2 * window_ms / 1000)  # for the last closed windows' models to reach the replicas
    tail = {
        book: tail_learning(replicas[-1], book, times, window_ms, closed_through)
        for book, times in store.tail_event_ms.items()
    }
    return {
        "ranks": ranks,
        "freshness": freshness,
        "before": before,
        "after": after,
        "release_at_s": release_at,
        "seconds_to_top_n": seconds_to_top,
        "top_n": top_n,
        "window_s": window_ms / 1000,
        "first_purchase_s": first_purchase / 1000 - started if first_purchase else None,
        **quiet_book_left(tops, store.last_event_of_quiet_book_ms, window_ms),
        "tail": tail,
    }


def quiet_book_left(tops: list, last_event_ms, window_ms: int) -> dict:
    """When QUIET_BOOK left the top N for good, from `tops`, (wall time, newest window end, top N) per
    ranking: `quiet_in_top_n_before`, whether it was in one of the last 4 top Ns before its last event, and
    `windows_to_leave`, the windows from the end of its last window with events to the newest window
    of the first ranking without it (1: it left as soon as serving had a window without its row)."""
    if last_event_ms is None:
        return {"quiet_in_top_n_before": None, "windows_to_leave": None, "seconds_to_leave": None}
    before = [top for at, _, top in tops if at * 1000 < last_event_ms]
    left = None
    for i, (at, window_end_ms, _) in enumerate(tops):
        if at * 1000 > last_event_ms and all(QUIET_BOOK not in later for _, _, later in tops[i:]):
            left = (at, window_end_ms)
            break
    last_window_end_ms = (last_event_ms // window_ms + 1) * window_ms
    return {
        "quiet_in_top_n_before": any(QUIET_BOOK in top for top in before[-4:]),
        "windows_to_leave": (left[1] - last_window_end_ms) / window_ms if left else None,
        "seconds_to_leave": left[0] - last_event_ms / 1000 if left else None,
    }


def tail_learning(replica, book: str, event_ms: list, window_ms: int, closed_through: int) -> dict:
    """A long-tail book's rows (windows with its events), how many of them have a row in the next window
    too (all a book could learn before empty windows had a label), how many could have learned by the
    story's end (their next window is before `closed_through`, so closed), and `n_learned` as a replica
    serves it."""
    windows = sorted({ms // window_ms for ms in event_ms})
    model = replica.http("GET", f"/models/{book}")[1]
    return {
        "rows": len(windows),
        "rows_with_next": sum(1 for w in windows if w + 1 in windows),
        "learnable": sum(1 for w in windows if w + 1 < closed_through),
        "n_learned": model.get("n_learned", 0),
    }


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    if result["freshness"]:
        t, f = zip(*result["freshness"])
        top.scatter(t, f, s=10)
    top.set_ylabel("window close -> servable (s)")
    top.set_title("Freshness of each snapshot, in a serving replica")
    points = [(t, r) for t, r in result["ranks"] if r is not None]
    if points:
        t, r = zip(*points)
        bottom.step(t, r, where="post", color="tab:red", label=NEW_BOOK)
    bottom.axvline(result["release_at_s"], color="grey", linestyle="--", label="released")
    if result["first_purchase_s"] is not None:
        bottom.axvline(result["first_purchase_s"], color="black", linestyle=":", label="first purchase")
    bottom.axhline(result["top_n"] + 0.5, color="tab:green", linewidth=0.8, label=f"top {result['top_n']}")
    lowest = max([r for _, r in points] + [3 * result["top_n"]])
    bottom.set_ylim(lowest + 0.5, 0.5)  # rank 1 on top
    bottom.set_ylabel("rank in /recommend")
    bottom.set_xlabel("seconds since the story started")
    bottom.set_title(f"Rank of {NEW_BOOK} over time")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/bookstore.yaml")
    parser.add_argument("--seconds", type=float, default=50, help="length of the story")
    parser.add_argument("--rate", type=float, default=300, help="events per second")
    parser.add_argument("--release-at", type=float, default=20, help="seconds until the new book appears")
    parser.add_argument(
        "--quiet-at",
        type=float,
        default=None,
        help=f"seconds until {QUIET_BOOK} goes quiet (default: halfway from the release to the end)",
    )
    parser.add_argument("--top-n", type=int, default=3)
    parser.add_argument("--ports", type=int, nargs=2, default=[8000, 8001])
    parser.add_argument("--plot", default=os.path.join(stack.PROJECT_DIR, "run", "demo", "bookstore.png"))
    args = parser.parse_args(argv)
    quiet_at = args.quiet_at if args.quiet_at is not None else (args.release_at + args.seconds) / 2

    run_id = uuid.uuid4().hex[:8]
    run_dir = os.path.join(stack.PROJECT_DIR, "run", "demo")
    config = derive_config(load_config(args.config), os.path.join(run_dir, "conf", f"bookstore-{run_id}.yaml"), run_id)
    ensure_topics(config["kafka.bootstrap_servers"], declared_topics(config))
    print(f"demo: submitting the bookstore learner (topics *-{run_id})")
    job_id = stack.submit("jobs/learner_job.py", "--config", config.source)
    replicas = []
    try:
        for port in args.ports:
            replicas.append(stack.Replica(config, port, log_path=os.path.join(run_dir, f"replica-{port}.log")))
        for replica in replicas:
            replica.wait_ready()
        print(
            f"demo: job {job_id} and replicas on ports {args.ports} are up; "
            f"the story runs {args.seconds:.0f}s, {NEW_BOOK} is released at {args.release_at:.0f}s"
        )
        result = run_story(config, replicas, args.seconds, args.rate, args.release_at, args.top_n, quiet_at)
    finally:
        for replica in replicas:
            replica.stop()
        stack.cancel(job_id)

    plot(result, args.plot)
    print(f"demo: top {args.top_n} before the release: {result['before']}")
    print(f"demo: top {args.top_n} once it took off:  {result['after']}")
    if result["seconds_to_top_n"] is None:
        print(f"demo: {NEW_BOOK} did not reach the top {args.top_n} during the story")
    else:
        windows = result["seconds_to_top_n"] / result["window_s"]
        print(
            f"demo: {NEW_BOOK} entered the top {args.top_n} {result['seconds_to_top_n']:.1f}s after its first "
            f"purchase ({windows:.1f} windows of {result['window_s']:.0f}s)"
        )
    if result["windows_to_leave"] is None:
        print(f"demo: {QUIET_BOOK}, quiet from {quiet_at:.0f}s, did not leave the top {args.top_n}")
    else:
        print(
            f"demo: {QUIET_BOOK} went quiet at {quiet_at:.0f}s and left the top {args.top_n} "
            f"{result['seconds_to_leave']:.1f}s after its last event ({result['windows_to_leave']:.0f} window(s) "
            f"after its last window with events)"
        )
    tail = result["tail"]
    print(
        f"demo: long-tail books learned {sum(t['n_learned'] for t in tail.values())} of their "
        f"{sum(t['rows'] for t in tail.values())} rows ({sum(t['rows_with_next'] for t in tail.values())} had a "
        f"row in the next window; the rest learned 0 purchases, features.empty_window_label)"
    )
    print(f"demo: plot written to {args.plot}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["seconds_to_top_n"] is not None else 1)
