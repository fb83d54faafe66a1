"""Benchmark of the reference tables (issue 4's targets).

    python bench/tables_bench.py [--contacts 1000000] [--lookups 200000]

Starts the embedded broker, produces N contacts to a compacted topic, then in a fresh child
process (the service's shape: the table reader and the state store, nothing else) bootstraps
the contacts table into an empty state folder, then does random lookups. Prints a table and
writes bench-results/tables.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consumer.kafka.bulk import BulkRecord, produce_all  # noqa: E402
from consumer.kafka.codec import AvroCodec, SchemaStore  # noqa: E402
from consumer.kafka.topics import COMPACT, TopicSpec, ensure_topics  # noqa: E402
from consumer.settings import Topics  # noqa: E402
from consumer.tools.embedded_broker import EmbeddedBroker  # noqa: E402


def produce_contacts(bootstrap: str, topic: str, count: int) -> float:
    codec = AvroCodec(SchemaStore())
    config = {
        "bootstrap.servers": bootstrap,
        "linger.ms": "50",
        "batch.size": "1000000",
        "queue.buffering.max.messages": "2000000",
        "compression.type": "lz4",
    }

    def contacts() -> Iterator[BulkRecord]:
        for k in range(count):
            contact = {
                "contact_id": f"c-{k}",
                "workspace_id": f"ws-{k % 1000}",
                "email": f"person.{k}@example.com",
                "phone": f"+1 650 {k % 1000:03d} {k % 10000:04d}",
                "first_name": "Ann",
                "last_name": f"Lee{k % 97}",
                "gender": "f",
                "date_of_birth": "1990-03-04",
                "city": "Menlo Park",
                "state": "CA",
                "zip": "94025",
                "country": "US",
                "external_id": f"crm-{k}",
                "identities": [
                    {"channel": "MESSENGER", "account_id": "page-1", "user_id": f"psid-{k}"}
                ],
                "updated_at": 1_780_000_000_000,
            }
            value = codec.encode("Contact", contact, topic)
            yield topic, contact["contact_id"].encode(), value, None

    started = time.perf_counter()
    produce_all(config, contacts(), 120)
    return time.perf_counter() - started


def child(bootstrap: str, topic: str, count: int, lookups: int) -> None:
    """Runs in a fresh process: bootstrap, then lookups; prints JSON."""
    from consumer.store.reference_tables import ReferenceTables
    from consumer.store.sqlite import StateStore
    from consumer.store.table_reader import TableReader

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    topics = Topics(contacts=topic)
    tables = ReferenceTables.for_topics(AvroCodec(SchemaStore()), topics)
    with tempfile.TemporaryDirectory(prefix="capi-bench-state-") as state:
        store = StateStore(Path(state)).open()
        reader = TableReader([tables.contacts], {"bootstrap.servers": bootstrap}, store)
        took = reader.bootstrap(timeout_s=600)
        rss_after_bootstrap = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        keys = [f"c-{random.randrange(count)}" for _ in range(lookups)]
        started = time.perf_counter()
        found = sum(1 for key in keys if tables.contacts.get(key) is not None)
        lookup_s = time.perf_counter() - started
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        db_bytes = (Path(state) / "tables.sqlite3").stat().st_size
        reader.close()
        store.close()
    print(
        json.dumps(
            {
                "records_read": reader.records_read,
                "keys": count,
                "bootstrap_s": round(took, 2),
                "bootstrap_records_per_s": round(reader.records_read / took),
                "lookups": lookups,
                "lookups_found": found,
                "lookup_us": round(lookup_s / lookups * 1e6, 2),
                "rss_mb_start": round(rss_before / 1024),
                "rss_mb_after_bootstrap": round(rss_after_bootstrap / 1024),
                "rss_mb_peak": round(rss_peak / 1024),
                "state_file_mb": round(db_bytes / 2**20),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--child", nargs=2, metavar=("BOOTSTRAP", "TOPIC"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.contacts, args.lookups)
        return
    topics = Topics()
    with EmbeddedBroker() as broker:
        ensure_topics(
            {"bootstrap.servers": broker.bootstrap_servers},
            [TopicSpec(topics.contacts, 3, COMPACT)],
        )
        produce_s = produce_contacts(broker.bootstrap_servers, topics.contacts, args.contacts)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--contacts",
                str(args.contacts),
                "--lookups",
                str(args.lookups),
                "--child",
                broker.bootstrap_servers,
                topics.contacts,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["produce_s"] = round(produce_s, 1)
    figures["machine"] = f"{os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}"
    targets = {"bootstrap_s": 60, "rss_mb_peak": 400, "lookup_us": 20}
    print(f"{'figure':<28}{'value':>12}{'target':>10}")
    for key, value in figures.items():
        target = targets.get(key)
        mark = "" if target is None else (" ok" if value <= target else " MISSED")
        print(f"{key:<28}{value!s:>12}{'' if target is None else f'<= {target}':>10}{mark}")
    results = ROOT / "bench-results"
    results.mkdir(exist_ok=True)
    (results / "tables.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
