"""Memory while one dataset is throttled for a long time (issue 12: under 400 MB resident with
the defaults, a dataset throttled for an hour, 5,000 events/s offered).

    python bench/parking_bench.py [--minutes 60] [--rate 5000]

Starts the embedded broker and the sandbox (light accept mode) with the second connection's
dataset (a quarter of the sample traffic) answering code 17 to every request, runs the service
with its defaults, offers `--rate` triggers a second for `--minutes`, and every 10 s prints the
service's resident memory, its peak, the results read and the events parked (the service's
own gauge). Ends with a table and writes bench-results/parking.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka import Producer

import bench
from consumer.kafka.topics import ensure_topics, topic_plan
from consumer.tools.demo import produce_sample_traffic
from consumer.tools.embedded_broker import EmbeddedBroker, free_port
from consumer.tools.sandbox.process import SandboxProcess

THROTTLED = "ds-3"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def gauge(port: int, name: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return float("nan")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return float("nan")


def offer(broker: str, topic: str, rate: int, seconds: float, stop: threading.Event) -> int:
    """Triggers at `rate` a second, fresh event ids and times, until `seconds` or `stop`."""
    producer = Producer(
        {"bootstrap.servers": broker, "linger.ms": "5", "queue.buffering.max.messages": "1000000"}
    )
    pool = bench.WORLD.triggers(10_000, seed=12, only_valid=True)
    started, sent = time.monotonic(), 0
    while not stop.is_set() and time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            trigger = {
                **pool[sent % len(pool)],
                "event_id": f"park-{sent}",
                "occurred_at": int(time.time() * 1000),
            }
            value = bench.CODEC.encode("ConversionTriggered", trigger, topic)
            producer.produce(topic, key=trigger["contact_id"].encode(), value=value)
            sent += 1
            if sent % 1000 == 0:
                producer.poll(0)
        time.sleep(0.05)
    producer.flush(60)
    return sent


def run(minutes: float, rate: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="capi-parking-") as tmp_dir, EmbeddedBroker() as b:
        tmp = Path(tmp_dir)
        creds = tmp / "creds"
        creds.mkdir()
        for name, value in bench.WORLD.credentials.items():
            (creds / name).write_text(value)
        topics = bench.new_topics()
        ensure_topics({"bootstrap.servers": b.bootstrap_servers}, topic_plan(topics, 3))
        produce_sample_traffic(
            b.bootstrap_servers,
            topics,
            bench.CODEC,
            [],
            bench.WORLD.connections(),
            contacts=bench.WORLD.contacts(),
            referrals=bench.WORLD.referrals(),
        )
        config = {
            **bench.sandbox_config(bench.WORLD),
            "faults": {THROTTLED: {"errors": {"17": 1.0}}},
        }
        with SandboxProcess(config, light=True) as sandbox:
            port = free_port()
            proc = bench.service(
                b.bootstrap_servers, topics, sandbox.url, creds, tmp / "state", metrics_port=port
            )
            pid = bench.service_pid(proc)
            reader = bench.Results(b.bootstrap_servers, topics.results)
            stop = threading.Event()
            offered: list[int] = []
            thread = threading.Thread(
                target=lambda: offered.append(
                    offer(b.bootstrap_servers, topics.triggered, rate, minutes * 60, stop)
                )
            )
            thread.start()
            started, samples = time.monotonic(), []
            while thread.is_alive():
                reader.read_until(sys.maxsize, 10)  # read for 10 s
                sample = {
                    "s": round(time.monotonic() - started),
                    "rss_mb": round(rss_mb(pid)),
                    "peak_mb": round(bench.peak_rss_mb(pid)),
                    "results": reader.count,
                    "parked": gauge(port, "capi_parked_events_waiting"),
                }
                samples.append(sample)
                print(sample, flush=True)
            peak = bench.peak_rss_mb(pid)
            bench.stop_service(proc)
            reader.close()
    return {
        "command": " ".join(["python", "bench/parking_bench.py", *sys.argv[1:]]),
        "minutes": minutes,
        "offered_per_s": rate,
        "offered": offered[0] if offered else 0,
        "results": samples[-1]["results"] if samples else 0,
        "parked_at_end": samples[-1]["parked"] if samples else 0,
        "peak_rss_mb": round(peak),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=int, default=5000)
    args = parser.parse_args()
    figures = run(args.minutes, args.rate)
    print(
        f"\nthrottled {THROTTLED} for {args.minutes} min at {args.rate}/s offered: "
        f"offered={figures['offered']} results={figures['results']} "
        f"parked at the end={figures['parked_at_end']:.0f} "
        f"peak RSS={figures['peak_rss_mb']} MB (limit 400)"
    )
    out = bench.ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "parking.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
