"""Benchmark of `capi-consumer signals` over a week of aggregates at 100 events/s.

    python bench/signals_bench.py [--datasets 1000] [--event-names 3] [--partitions 12]
                                  [--days-stored 7]

A week at 100 events/s is 100 x 604,800 s = 60,480,000 results. The signals topic holds one
record per input partition, dataset, event name and UTC day: with 1,000 datasets, 3 event
names and 12 input partitions, a week is 1,000 x 3 x 7 x 12 = 252,000 records (as compaction
leaves the topic), each counting 60,480,000 / 252,000 = 240 results on average. This produces
those records, generated (the counts vary per key; 5 % of the datasets send a handful of
events, under Meta's minimum), to a compacted topic of the embedded broker, then times:

- the command as a user runs it, its own process: `capi-consumer signals --json` (start-up,
  the topic read to its end, the report, the JSON), and again with `--html FILE`;
- in this process, over the same records: decoding the latest value of each key, and the
  report (sums per dataset, event name and day, coverage, reasons), each alone.

`--days-stored 28` fills the topic as it stands once the service has run for its whole
retention (four weeks of records; the report still covers the last 7 days). Prints its
figures and, run on its own, writes bench-results/signals.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consumer.events.signal_window import Window  # noqa: E402
from consumer.events.signals import DayCounts, SignalKey  # noqa: E402
from consumer.kafka.bulk import produce_all  # noqa: E402
from consumer.kafka.topics import COMPACT, TopicSpec, ensure_topics  # noqa: E402
from consumer.store.signals_topic import LatestRecords  # noqa: E402
from consumer.tools.embedded_broker import EmbeddedBroker  # noqa: E402
from consumer.tools.signals.report import Selection, build_report  # noqa: E402

WEEK_S = 7 * 24 * 3600
EVENTS_PER_S = 100
EVENT_NAMES = ("LeadSubmitted", "Purchase", "QualifiedLead", "InitiateCheckout", "AddToCart")
KEYS = ("em", "ph", "fn", "ln", "country", "external_id", "ctwa_clid")


def aggregates(
    datasets: int, event_names: int, partitions: int, last_day: dt.date, days: int = 7
) -> list[tuple[bytes, bytes]]:
    """One record per partition, dataset, event name and day of the `days` ending `last_day`:
    `EVENTS_PER_S` over each week, spread over the keys with random variation (5 % of the
    datasets send a handful of events a week)."""
    rng = random.Random(7)
    big = datasets - len(range(0, datasets, 20))
    mean = EVENTS_PER_S * WEEK_S / (big * event_names * 7 * partitions)
    dates = [(last_day - dt.timedelta(days=d)).isoformat() for d in range(days)]
    out = []
    for d in range(datasets):
        small = d % 20 == 0
        for name in EVENT_NAMES[:event_names]:
            for day in dates:
                for p in range(partitions):
                    results = rng.randint(0, 1) if small else rng.randint(0, round(2 * mean))
                    key = SignalKey(p, f"{1_000_000_000 + d}", name, day)
                    out.append((key.encode(), _counts(rng, results).encode(key)))
    return out


def _counts(rng: random.Random, results: int) -> DayCounts:
    skipped = {"CHANNEL_NOT_SELECTED": results // 12, "RESTRICTED_REGION": results // 20}
    failed = {"ASSET_NOT_LINKED": results // 50}
    sent = results - sum(skipped.values()) - sum(failed.values())
    match_keys = {k: rng.randint(sent // 3, sent) for k in KEYS if sent}
    return DayCounts(f"ws-{rng.randrange(100)}", sent, skipped, failed, match_keys)


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], parts: int) -> None:
    """Each record to the partition its key names (the input partition its counts are of)."""
    config = {"bootstrap.servers": bootstrap, "linger.ms": "50", "batch.size": "1000000"}
    by_partition = (
        (topic, key, value, int(key.split(b"|", 1)[0]) % parts) for key, value in records
    )
    produce_all(config, by_partition, 120)


def run_command(bootstrap: str, topic: str, *args: str) -> tuple[float, dict[str, Any], str]:
    """`capi-consumer signals --json ARGS` to its end: (seconds, its JSON, its summary line)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CAPI_")},
        "CAPI_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CAPI_TOPIC_SIGNALS": topic,
    }
    command = [sys.executable, "-m", "consumer.tools.cli", "signals", "--json", *args]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(done.stdout), done.stderr.strip()


def measure(
    bootstrap: str,
    datasets: int = 1000,
    event_names: int = 3,
    partitions: int = 12,
    days_stored: int = 7,
) -> dict[str, Any]:
    last_day = dt.datetime.now(dt.UTC).date()
    records = aggregates(datasets, event_names, partitions, last_day, days_stored)
    results = sum(results_of(value) for _, value in records)
    topic = f"signals-bench-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap.servers": bootstrap}, [TopicSpec(topic, partitions, COMPACT)])
    started = time.perf_counter()
    produce(bootstrap, topic, records, partitions)
    produce_s = time.perf_counter() - started
    command_s, report, summary = run_command(bootstrap, topic)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with tempfile.TemporaryDirectory(prefix="capi-bench-") as tmp:
        html_s, _, _ = run_command(bootstrap, topic, "--html", str(Path(tmp) / "signals.html"))
        html_bytes = (Path(tmp) / "signals.html").stat().st_size
    latest = LatestRecords()
    for key, value in records:
        latest.add(key, value)
    started = time.perf_counter()
    by_key = latest.records(topic)
    keys_s = time.perf_counter() - started
    started = time.perf_counter()
    build_report(by_key, Window(last_day), Selection())
    report_s = time.perf_counter() - started
    return {
        "days_stored": days_stored,
        "records": len(records),
        "bytes": sum(len(k) + len(v) for k, v in records),
        "results_counted": results,
        "produce_s": round(produce_s, 1),
        "command_json_s": round(command_s, 2),
        "command_summary": summary,
        "command_peak_rss_mb": round(peak_mb),
        "command_html_s": round(html_s, 2),
        "html_bytes": html_bytes,
        "signals_reported": len(report["signals"]),
        "below_minimum": sum(s["below_minimum"] for s in report["signals"]),
        "keys_s": round(keys_s, 2),
        "report_s": round(report_s, 2),
    }


def results_of(value: bytes) -> int:
    """The results one record counts."""
    data = json.loads(value)
    return int(data["sent"]) + sum(data["skipped"].values()) + sum(data["failed"].values())


def report_lines(figures: dict[str, Any]) -> list[str]:
    f = figures
    return [
        f"signals topic, {f['days_stored']} days stored: {f['records']:,} records, "
        f"{f['bytes']:,} bytes, counting {f['results_counted']:,} results "
        f"(produced in {f['produce_s']} s)",
        f"capi-consumer signals --json (its own process): {f['command_json_s']} s, "
        f"peak resident memory {f['command_peak_rss_mb']} MB",
        f"  {f['command_summary']}",
        f"  {f['signals_reported']:,} datasets x event names reported, "
        f"{f['below_minimum']} below the minimum",
        f"capi-consumer signals --json --html: {f['command_html_s']} s "
        f"(page {f['html_bytes']:,} bytes)",
        f"in process, the same records: their keys decoded {f['keys_s']} s, the report "
        f"(values decoded, summed) {f['report_s']} s",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=1000)
    parser.add_argument("--event-names", type=int, default=3, choices=range(1, 6))
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument(
        "--days-stored", type=int, default=7, help="days of aggregates in the topic (retention: 28)"
    )
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        figures = measure(
            broker.bootstrap_servers,
            args.datasets,
            args.event_names,
            args.partitions,
            args.days_stored,
        )
    figures["machine"] = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    for line in report_lines(figures):
        print(line)
    results = ROOT / "bench-results"
    results.mkdir(exist_ok=True)
    (results / "signals.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
