"""`capi-consumer demo`: the whole service on the embedded default, with a summary.

Starts the embedded broker and the Graph API sandbox on free local ports, creates the topics,
seeds connections and credentials, produces sample triggers (plus two undecodable messages),
runs the consumer until every input has its result, prints what happened, stops everything.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from consumer.events.signals import META_WEEKLY_MINIMUM
from consumer.kafka.bulk import BulkRecord, produce_all
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.kafka.topics import ensure_topics, topic_plan
from consumer.ops.metrics import Metrics
from consumer.service.loop import Service, build_service
from consumer.settings import Settings, Topics
from consumer.store.reference_tables import record_key
from consumer.tools.embedded_broker import EmbeddedBroker
from consumer.tools.samples import SampleWorld, sandbox_config, write_credentials
from consumer.tools.sandbox.process import SandboxProcess
from consumer.tools.signals import Selection, Window, build_report, read_signals

__all__ = ["ResultReader", "produce_sample_traffic", "run_demo"]

_PARTITIONS = 3


def produce_sample_traffic(
    bootstrap: str,
    topics: Topics,
    codec: AvroCodec,
    triggers: list[dict[str, Any]],
    connections: list[dict[str, Any]],
    *,
    garbage: int = 0,
    contacts: Sequence[dict[str, Any]] = (),
    referrals: Sequence[dict[str, Any]] = (),
) -> int:
    """Produce the tables' records, then triggers (and `garbage` undecodable values).

    Returns how many input messages (triggers) were produced; `UndeliveredError` when the
    broker did not confirm them all.
    """
    tables = (
        ("MetaConnection", topics.connections, connections),
        ("Contact", topics.contacts, contacts),
        ("AdReferral", topics.referrals, referrals),
    )

    def records() -> Iterator[BulkRecord]:
        for schema, topic, rows in tables:
            for row in rows:
                key = record_key(schema, row).encode()
                yield topic, key, codec.encode(schema, row, topic), None
        for trigger in triggers:
            value = codec.encode("ConversionTriggered", trigger, topics.triggered)
            yield topics.triggered, trigger["contact_id"].encode(), value, None
        for i in range(garbage):
            yield topics.triggered, f"garbage-{i}".encode(), b"not avro \x00", None

    produce_all({"bootstrap.servers": bootstrap, "linger.ms": "20"}, records(), 60)
    return len(triggers) + garbage


class ResultReader:
    """Reads the results topic (read_committed) from the beginning."""

    def __init__(self, bootstrap: str, topic: str, codec: AvroCodec) -> None:
        self._codec = codec
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"results-reader-{uuid.uuid4()}",
                "enable.auto.commit": "false",
                "isolation.level": "read_committed",
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=10)
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions]
        )
        self.results: list[dict[str, Any]] = []

    def read(self, timeout: float = 0.2) -> int:
        msgs = self._consumer.consume(num_messages=10_000, timeout=timeout)
        for msg in msgs:
            if msg.error() is None:
                self.results.append(self._codec.decode(msg.value(), "ConversionResult"))
        return len(msgs)

    def read_until(self, expected: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.results) < expected and time.monotonic() < deadline:
            self.read()
        return len(self.results) >= expected

    def close(self) -> None:
        self._consumer.close()


def run_demo(count: int, timeout_s: float) -> int:
    world = SampleWorld()
    topics = Topics()
    codec = AvroCodec(SchemaStore())
    echo = click.echo
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="capi-demo-") as tmp,
        EmbeddedBroker() as broker,
        SandboxProcess(sandbox_config(world)) as sandbox,
    ):
        echo(f"broker   {broker.bootstrap_servers} (embedded Tansu, in memory)")
        echo(f"sandbox  {sandbox.url} (Graph API stand-in)")
        creds = write_credentials(Path(tmp) / "credentials", world.credentials)
        ensure_topics(
            {"bootstrap.servers": broker.bootstrap_servers}, topic_plan(topics, _PARTITIONS)
        )
        expected = produce_sample_traffic(
            broker.bootstrap_servers,
            topics,
            codec,
            world.triggers(count),
            world.connections(),
            garbage=2,
            contacts=world.contacts(),
            referrals=world.referrals(),
        )
        echo(f"produced {expected} triggers ({count} samples, 2 undecodable)")
        settings = Settings(
            bootstrap_servers=broker.bootstrap_servers,
            kafka={"session.timeout.ms": "6000"},
            group_id="capi-consumer-demo",
            graph_url=sandbox.url,
            credentials_dir=creds,
            state_dir=Path(tmp) / "state",
            metrics_port=0,
            batch_linger_ms=50,
        )
        app = build_service(settings)
        errors: list[BaseException] = []

        def run_app() -> None:
            try:
                app.run()
            except BaseException as exc:  # noqa: BLE001 - reported below; the demo must not hang
                errors.append(exc)

        thread = threading.Thread(target=run_app, name="capi-consumer", daemon=True)
        thread.start()
        reader = ResultReader(broker.bootstrap_servers, topics.results, codec)
        deadline = time.monotonic() + timeout_s
        said = ""
        step = max(expected // 5, 1)
        while len(reader.results) < expected and time.monotonic() < deadline and not errors:
            reader.read()
            stage, progress = _progress(app, len(reader.results), expected, step)
            if stage != said:  # a line when something moved, never the same one again
                said = stage
                echo(f"  {progress}")
        app.stop()
        thread.join(60)
        reader.read(0.5)
        reader.close()
        stats = sandbox.stats()
        echo("")
        _summary(reader.results, expected, stats, time.monotonic() - started)
        _enrichment_summary(app.metrics)
        _signal_health(settings)
        if errors:
            echo(f"consumer stopped with an error: {errors[0]!r}", err=True)
            return 1
        if len(reader.results) != expected:
            echo(f"missing results: {expected - len(reader.results)}", err=True)
            return 1
        sent = sum(1 for r in reader.results if r["status"] == "SENT")
        if sent != stats["accepted_events"]:
            echo(f"SENT results {sent} != events the sandbox accepted", err=True)
            return 1
        return 0


def _progress(app: Service, results: int, expected: int, step: int) -> tuple[str, str]:
    """Where the consumer is, and the line that says it: its start-up step until it takes
    traffic, then the results so far, once a `step` of them more."""
    if not app.ready.is_set():
        starting = app.monitor.ready_problems()[0]
        return starting, starting
    if results == 0:
        return "consuming", "consuming: the group assigns the partitions, Meta answers"
    return f"results {min(results, expected) // step}", f"results {results}/{expected}"


def _signal_health(settings: Settings) -> None:
    """A digest of the sample datasets' signal health, from the signals topic the service
    wrote; `capi-consumer signals` prints it all."""
    report = build_report(
        read_signals(settings), Window(dt.datetime.now(dt.UTC).date()), Selection()
    )
    signals = report.signals
    below = sum(s.below_minimum for s in signals)
    echo = click.echo
    echo("")
    echo(
        f"Signal health: {len(signals)} dataset events, {len(signals) - below} with Meta's "
        f"{META_WEEKLY_MINIMUM} SENT this week, {below} below"
    )
    for s in sorted(signals, key=lambda s: -s.week_sent)[:3]:
        keys = " ".join(f"{c.key} {c.share:.0%}" for c in s.match_keys[:4])
        echo(f"  {s.dataset_id} {s.event_name:<14} {s.week_sent:>4} SENT  {keys}")
    reasons: dict[str, tuple[int, str]] = {}
    for s in signals:
        for r in s.not_sent:
            events, advice = reasons.get(r.reason, (0, r.advice))
            reasons[r.reason] = (events + r.events, advice)
    for reason, (events, advice) in sorted(reasons.items(), key=lambda r: -r[1][0])[:3]:
        echo(f"  not sent {events:>3} {reason}: {advice}")
    echo("  (all of it: capi-consumer signals, --html FILE for charts)")


def _enrichment_summary(metrics: Metrics) -> None:
    def hits(source: str) -> int:
        value = metrics.registry.get_sample_value(
            "capi_enrichment_lookups_total", {"source": source, "result": "hit"}
        )
        return int(value or 0)

    click.echo(
        f"Enrichment: {hits('contacts')} triggers completed from contacts, "
        f"{hits('referrals')} click ids found in ad referrals"
    )


def _summary(
    results: list[dict[str, Any]], expected: int, stats: dict[str, int], took: float
) -> None:
    echo = click.echo
    echo(f"{expected} triggers -> {len(results)} results in {took:.1f} s")
    by_status = Counter(r["status"] for r in results)
    by_reason = Counter((r["status"], r["reason"]) for r in results if r["reason"])
    for status in ("SENT", "SKIPPED", "FAILED"):
        echo(f"  {status:<8} {by_status.get(status, 0):>6}")
        for (s, reason), n in sorted(by_reason.items(), key=lambda x: -x[1]):
            if s == status:
                echo(f"      {reason:<26} {n:>6}")
    echo(
        f"Graph API sandbox: {stats['accepted_events']} events accepted in "
        f"{stats['accepted_requests']} requests, {stats['rejected_requests']} requests rejected"
    )
    sample = next((r for r in results if r["meta_response"]), None)
    if sample is not None:
        echo("Sample Meta response:")
        echo("  " + json.dumps(sample["meta_response"]))
