"""The local walkthrough's commands: `broker`, `topics create`, `seed`, `produce`, `tail`.

From `make run` to `capi-consumer run` on a local broker, one command a step (README, "From the
demo to a running service"). Settings come from the environment like `run`'s; a configuration
error is one line and exit 2, an operational failure (a broker that does not answer, a bad
record) one line and exit 1.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NoReturn, ParamSpec

import click
from confluent_kafka import KafkaException, Message

from consumer.errors import CapiConsumerError, ConfigError
from consumer.settings import Settings

__all__ = ["LOCAL_COMMANDS", "one_line_errors"]

P = ParamSpec("P")

# option of `seed` -> (schema, topic attribute of Topics)
_TABLES = {
    "connections": ("MetaConnection", "connections"),
    "contacts": ("Contact", "contacts"),
    "referrals": ("AdReferral", "referrals"),
}
# Tansu 0.6 takes ~23 s to form a group with the default 45 s session timeout, ~3 s with 6 s;
# and it may miss a LeaveGroup, then holds the next rebalance for max.poll.interval.ms
_FAST_GROUPS = (
    "CAPI_KAFKA_SESSION_TIMEOUT_MS=6000 CAPI_KAFKA_HEARTBEAT_INTERVAL_MS=500 "
    "CAPI_KAFKA_MAX_POLL_INTERVAL_MS=45000"
)
RESULTS_HEADER = f"{'EVENT_ID':<24} {'STATUS':<8} {'REASON':<24} {'DATASET':<10} SOURCE"
DLQ_HEADER = f"{'EVENT_ID':<24} {'SOURCE':<28} ERROR"


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"capi-consumer: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def reader_may_leave() -> Iterator[None]:
    """Output piped into a reader that stops early (`| head`): it has what it wanted, and the
    rest of the output, and the interpreter's last flush, go nowhere instead of failing."""
    try:
        yield
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def one_line_errors(command: Callable[P, None]) -> Callable[P, None]:
    """A command whose failures are one line on stderr, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except ConfigError as exc:
            _fail(f"configuration error: {exc}", 2)
        except CapiConsumerError as exc:  # LocalError; the codec's, with a Schema Registry
            _fail(str(exc))
        except KafkaException as exc:  # e.g. a CAPI_KAFKA_* setting librdkafka does not know
            _fail(f"Kafka client: {exc.args[0].str() if exc.args else exc}")

    return wrapper


def _settings() -> Settings:
    return Settings.from_env(check_dirs=False)  # a ConfigError is reported by `one_line_errors`


def _on_stop_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _listened_on(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@click.command()
@click.option(
    "--port",
    default=9092,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port on 127.0.0.1; 0 picks a free one.",
)
@one_line_errors
def broker(port: int) -> None:
    """Run the embedded Kafka broker (Tansu, in memory) until Ctrl-C.

    Storage is in memory: stopping the broker (Ctrl-C or SIGTERM) loses every topic and record.
    Prints its address and the lines to export (CAPI_KAFKA_BOOTSTRAP_SERVERS, and group timeouts
    that suit this broker).
    """
    from consumer.tools.embedded_broker import EmbeddedBroker
    from consumer.tools.walkthrough import LocalError

    if port and _listened_on(port):
        _fail(
            f"broker: 127.0.0.1:{port}: cannot listen: Address already in use "
            "(--port 0 picks a free one)",
            2,
        )
    stop = _on_stop_signals()
    server = EmbeddedBroker(port or None)
    servers = server.start()  # a BrokerError (no binary, no answer) is one line
    try:
        click.echo(f"bootstrap servers: {servers}")
        click.echo(f"export CAPI_KAFKA_BOOTSTRAP_SERVERS={servers}")
        click.echo(f"export {_FAST_GROUPS}  # group joins in ~3 s on this broker, not ~23 s")
        click.echo(
            "(embedded Tansu, storage in memory: stopping it loses every topic; "
            "Ctrl-C or SIGTERM stops it)"
        )
        sys.stdout.flush()
        while not stop.wait(0.5):
            if not server.running() and not stop.wait(0.5):  # Ctrl-C reaches it too
                raise LocalError(f"the broker on {servers} stopped")
    finally:
        server.stop()


@click.group()
def topics() -> None:
    """The service's topics: `topics create`."""


@topics.command("create")
@click.option(
    "--partitions",
    default=3,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Partitions of each new topic (results, retry: at least the input's).",
)
@one_line_errors
def topics_create(partitions: int) -> None:
    """Create the input, results, dead-letter, retry and the three table topics; those that
    exist are reported and left as they are."""
    from consumer.tools.walkthrough import create_topics

    lines, ok = create_topics(_settings(), partitions)
    for line in lines:
        click.echo(line)
    if not ok:
        sys.exit(1)


def _load_records(file: IO[str], schema: str, *, single: bool = False) -> list[dict[str, Any]]:
    """The records of a JSON file (an array; with `single` also one object), each checked
    against `schema`; a `LocalError` naming the first bad record by its index."""
    from consumer.kafka.codec import SchemaStore
    from consumer.tools.json_records import check_record
    from consumer.tools.walkthrough import LocalError

    label = file.name
    try:
        data = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LocalError(f"{label}: not JSON ({exc})") from exc
    one = single and isinstance(data, dict)
    if not isinstance(data, list) and not one:
        raise LocalError(f"{label}: expected a JSON array of {schema} records")
    store, out = SchemaStore(), []
    for i, record in enumerate([data] if one else data):
        try:
            out.append(check_record(store, schema, record))
        except ValueError as exc:
            raise LocalError(f"{label}: {'' if one else f'record {i}: '}{exc}") from exc
    return out


def _write_sample_files(settings: Settings, sandbox_path: Path) -> list[str]:
    """The sample world's credential files (CAPI_CREDENTIALS_DIR, created) and the sandbox's
    configuration; one line each."""
    from consumer.tools.samples import SampleWorld, sandbox_config, write_credentials
    from consumer.tools.walkthrough import LocalError

    world, creds = SampleWorld(), settings.credentials_dir
    try:
        write_credentials(creds, world.credentials)
        sandbox_path.write_text(json.dumps(sandbox_config(world), indent=2) + "\n", "utf-8")
    except OSError as exc:
        raise LocalError(
            f"{exc.filename}: cannot write: {exc.strerror} (set CAPI_CREDENTIALS_DIR, e.g. ./creds)"
        ) from exc
    return [
        f"{'credentials':<28} {len(world.credentials)} files in {creds}",
        f"{'sandbox configuration':<28} {sandbox_path} "
        f"(capi-consumer sandbox --port 8800 --config {sandbox_path})",
    ]


@click.command()
@click.option(
    "--connections",
    type=click.File("r"),
    help="A JSON array of MetaConnection records (schemas/MetaConnection.avsc).",
)
@click.option("--contacts", type=click.File("r"), help="A JSON array of Contact records.")
@click.option("--referrals", type=click.File("r"), help="A JSON array of AdReferral records.")
@click.option(
    "--sandbox-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("sandbox.json"),
    show_default=True,
    help="Sample world: where to write the Graph API sandbox's configuration.",
)
@one_line_errors
def seed(*, sandbox_config: Path, **files: IO[str] | None) -> None:
    """Load the reference tables: the sample world, or your JSON files.

    Without files: the sample world's connections, 5,000 contacts and their ad referrals, its
    access tokens and app secret written into CAPI_CREDENTIALS_DIR (created), and the Graph API
    sandbox's configuration (for its --config). With files: only their records, each checked
    against its schema first (updated_at may be left out: now).
    """
    from consumer.service.loop import codec_for
    from consumer.store.reference_tables import record_key
    from consumer.tools.samples import SampleWorld
    from consumer.tools.walkthrough import produce, require_topics

    settings = _settings()
    world = SampleWorld()
    samples = {
        "connections": world.connections,
        "contacts": world.contacts,
        "referrals": world.referrals,
    }
    own = {table: file for table, file in files.items() if file is not None}
    tables = (
        {t: _load_records(f, _TABLES[t][0]) for t, f in own.items()}
        if own
        else {table: make() for table, make in samples.items()}
    )
    names = {table: getattr(settings.topics, _TABLES[table][1]) for table in tables}
    require_topics(settings, *names.values())
    lines = [] if own else _write_sample_files(settings, sandbox_config)
    codec = codec_for(settings)
    schemas = {table: _TABLES[table][0] for table in tables}
    produce(
        settings,
        [
            (names[t], record_key(schemas[t], r).encode(), codec.encode(schemas[t], r, names[t]))
            for t, records in tables.items()
            for r in records
        ],
    )
    for table, records in tables.items():
        click.echo(f"{names[table]:<28} {len(records)} {table}")
    for line in lines:
        click.echo(line)
    if not own:
        for line in _sample_ids(world.connections()):
            click.echo(line)


def _sample_ids(connections: list[dict[str, Any]]) -> list[str]:
    """The ids a hand-written trigger needs, connection by connection (docs/contract.md has a
    whole trigger; `produce --sample N` writes valid ones)."""
    lines = []
    for c in connections:
        datasets = ", ".join(d["dataset_id"] for d in c["datasets"])
        assets = ", ".join(f"{a['asset_id']} ({a['registration_country']})" for a in c["assets"])
        label = f"connection {c['connection_id']}"
        lines.append(f"{label:<28} {c['status']}, datasets {datasets}; assets {assets}")
    workspace = connections[0]["workspace_id"] if connections else "-"
    lines.append(f"{'workspace':<28} {workspace} (a trigger by hand: docs/contract.md)")
    return lines


@click.command()
@click.option(
    "--sample",
    type=click.IntRange(1, 100_000),
    help="N triggers of the sample world: every channel and event type, and some the rules refuse.",
)
@click.option("--valid-only", is_flag=True, help="With --sample: only triggers the rules accept.")
@click.option(
    "--json",
    "json_file",
    type=click.File("r"),
    help="A trigger (or a JSON array of them), fields as in "
    "schemas/ConversionTriggered.avsc; - reads stdin. Left out: event_id (generated), "
    "occurred_at (now), the optional fields (null).",
)
@one_line_errors
def produce(sample: int | None, valid_only: bool, json_file: IO[str] | None) -> None:
    """Produce triggers to the input topic (CAPI_TOPIC_TRIGGERED)."""
    from consumer.service.loop import codec_for
    from consumer.tools.samples import SampleWorld
    from consumer.tools.walkthrough import produce as produce_messages
    from consumer.tools.walkthrough import require_topics

    if (sample is None) == (json_file is None):
        raise click.UsageError("give either --sample N or --json FILE")
    if json_file is not None:
        triggers = _load_records(json_file, "ConversionTriggered", single=True)
    else:  # a new draw each time: the same event ids again would all be DUPLICATEs
        seed = int.from_bytes(os.urandom(4), "big")
        triggers = SampleWorld().triggers(sample or 0, seed=seed, only_valid=valid_only)
    settings = _settings()
    topic = settings.topics.triggered
    require_topics(settings, topic)
    codec = codec_for(settings)
    produce_messages(
        settings,
        [
            (topic, t["contact_id"].encode(), codec.encode("ConversionTriggered", t, topic))
            for t in triggers
        ],
    )
    click.echo(f"produced {len(triggers)} trigger{'s' * (len(triggers) != 1)} to {topic}")
    if json_file is not None:
        for trigger in triggers:
            click.echo(f"  event_id {trigger['event_id']}")


def _result_line(value: bytes | None, codec: Any, *, as_json: bool) -> str:
    record = codec.decode(value, "ConversionResult")
    if as_json:
        return json.dumps(record, ensure_ascii=False)
    return (
        f"{record['event_id'] or '-':<24} {record['status']:<8} {record['reason'] or '':<24} "
        f"{record['dataset_id'] or '-':<10} {record['source_partition']}/"
        f"{record['source_offset']}"
    )


def _dead_letter_line(msg: Any, codec: Any, *, as_json: bool) -> str:
    headers = {k: (v or b"").decode(errors="replace") for k, v in msg.headers() or []}
    try:
        event_id = codec.decode(msg.value(), "ConversionTriggered")["event_id"]
    except CapiConsumerError:  # what was undecodable stays so
        event_id = None
    source = {k: headers.get(f"capi.source.{k}") for k in ("topic", "partition", "offset")}
    if not as_json:
        where = "/".join(str(v) for v in source.values()) if source["topic"] else "-"
        return f"{event_id or '-':<24} {where:<28} {headers.get('capi.error', '')}"
    key = msg.key()
    return json.dumps(
        {
            "event_id": event_id,
            "error": headers.get("capi.error"),
            "source": source,
            "key": None if key is None else key.decode(errors="replace"),
            "value_base64": base64.b64encode(msg.value() or b"").decode(),
        },
        ensure_ascii=False,
    )


@click.command()
@click.argument("which", type=click.Choice(["results", "dlq"]))
@click.option("--follow", "-f", is_flag=True, help="Keep reading new ones until Ctrl-C or SIGTERM.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, not a table.")
@one_line_errors
def tail(which: str, follow: bool, as_json: bool) -> None:
    """Print the results or dead letters, from the beginning, oldest first.

    A table, or JSON lines (--json). Results: event_id, status, reason, dataset and the input's
    partition/offset. Dead letters: event_id, the input (topic/partition/offset) and the
    capi.error header. What the topic holds is printed in time order across its partitions
    (read whole first: meant for the local path's topics); with --follow, what comes next as it
    comes, until Ctrl-C or SIGTERM.
    """
    from consumer.service.loop import codec_for
    from consumer.tools.walkthrough import Tail

    settings = _settings()
    topic = settings.topics.results if which == "results" else settings.topics.dlq
    codec, stop = codec_for(settings), _on_stop_signals()
    reader, count = Tail(settings, topic), 0

    def show(msg: Message) -> None:
        nonlocal count
        try:
            line = (
                _result_line(msg.value(), codec, as_json=as_json)
                if which == "results"
                else _dead_letter_line(msg, codec, as_json=as_json)
            )
        except CapiConsumerError as exc:
            click.echo(f"capi-consumer: {msg.partition()}/{msg.offset()}: {exc}", err=True)
            return
        click.echo(line)
        count += 1

    if not as_json:
        click.echo(RESULTS_HEADER if which == "results" else DLQ_HEADER)
    with reader_may_leave():
        try:
            held = reader.messages(follow=False, stopped=stop.is_set)
            for msg in sorted(held, key=lambda m: (m.timestamp()[1], m.partition(), m.offset())):
                show(msg)
            if follow:
                for msg in reader.messages(follow=True, stopped=stop.is_set):
                    show(msg)
        finally:
            reader.close()
    noun = "results" if which == "results" else "dead letters"
    click.echo(f"{count} {noun} in {topic}", err=True)


LOCAL_COMMANDS: list[click.Command] = [broker, topics, seed, produce, tail]  # for `capi-consumer`
