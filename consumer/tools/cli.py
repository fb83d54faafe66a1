"""The `capi-consumer` command: run, demo, sandbox, test-event, replay-dlq, check, signals, and
the local path's broker, topics, seed, produce and tail (`local_cli.py`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from consumer.errors import CapiConsumerError, ConfigError
from consumer.events.records import CUSTOMER_FIELDS, Channel, EventType
from consumer.events.results import REPLAYABLE_REASONS
from consumer.events.signal_window import MAX_DAYS as MAX_SIGNAL_DAYS
from consumer.settings import Settings
from consumer.tools.local_cli import LOCAL_COMMANDS, one_line_errors, reader_may_leave

__all__ = ["main"]
log = logging.getLogger("consumer")


def _setup_logging(level: str = "INFO", fmt: str = "text", worker: int | None = None) -> None:
    from consumer.ops.logs import setup_logging

    setup_logging(level, fmt, worker)


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except ConfigError as exc:
        click.echo(f"capi-consumer: configuration error: {exc}", err=True)
        sys.exit(2)


@click.group(commands=LOCAL_COMMANDS)  # broker, topics create, seed, produce, tail
@click.version_option(package_name="capi-consumer")
def main() -> None:
    """Conversions from WhatsApp, Messenger and Instagram conversations to Meta's CAPI."""


@main.command()
@click.option("--worker", type=int, hidden=True, help="Set by the supervisor: this worker's index.")
@click.option("--metrics-fd", type=int, hidden=True, help="Set by the supervisor: a socket.")
def run(worker: int | None, metrics_fd: int | None) -> None:
    """Run the service (configured by CAPI_* environment variables)."""
    settings = _settings()
    _setup_logging(settings.log_level, settings.log_format, worker)
    from consumer.service.main import run_service

    try:
        sys.exit(run_service(settings, worker=worker, metrics_fd=metrics_fd))
    except ConfigError as exc:
        click.echo(f"capi-consumer: configuration error: {exc}", err=True)
        sys.exit(2)


@main.command()
@click.option("--triggers", default=300, show_default=True, help="Sample triggers to produce.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for results.")
def demo(triggers: int, timeout: float) -> None:
    """The embedded default: local broker, Graph API sandbox, sample traffic, a summary."""
    _setup_logging("WARNING")
    from consumer.tools.demo import run_demo

    try:
        sys.exit(run_demo(triggers, timeout))
    except CapiConsumerError as exc:  # no embedded broker: what to install, in one line
        click.echo(f"capi-consumer demo: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8800, show_default=True, help="0 picks a free port.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON: tokens (with datasets and app_secret), restricted_assets, linked_assets.",
)
@click.option("--token", "tokens", multiple=True, help="An accepted access token (any dataset).")
@click.option("--record-bodies", is_flag=True, help="Keep raw request bodies for inspection.")
@click.option("--seed", type=int, help="Seed of the fault plan's random draws.")
@click.option("--light", is_flag=True, help="Benchmarks: check one event in 100, keep counts only.")
def sandbox(
    *,
    host: str,
    port: int,
    config_path: Path | None,
    tokens: tuple[str, ...],
    record_bodies: bool,
    seed: int | None,
    light: bool,
) -> None:
    """A local Graph API stand-in that validates like Meta and injects faults on demand."""
    _setup_logging("WARNING")
    from consumer.tools.sandbox import Sandbox, SandboxConfig
    from consumer.tools.sandbox.faults import FaultPlan

    data: dict[str, Any] = {}
    if config_path is not None:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    data.setdefault("tokens", {}).update({t: {"datasets": "*"} for t in tokens})
    try:
        server = Sandbox(
            SandboxConfig.from_json(data),
            host,
            port,
            record_bodies=record_bodies,
            faults=FaultPlan(data.get("faults", {}), seed),
            light=light,
        )
    except OSError as exc:
        click.echo(
            f"capi-consumer sandbox: {host}:{port}: cannot listen: {exc.strerror or exc}", err=True
        )
        sys.exit(2)
    click.echo(f"sandbox listening on {server.url}")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


class _Code(click.Choice):  # type: ignore[type-arg]
    """A choice of upper-case codes (the schemas' enums, the reason codes), taken in any case
    and given, and listed in errors, in theirs."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(value.upper() if isinstance(value, str) else value, param, ctx)


_CHANNELS = _Code([c.value for c in Channel])
_EVENT_TYPES = _Code([t.value for t in EventType])


@main.command("test-event")
@click.option("--connection", "connection_id", required=True, help="Meta connection id.")
@click.option("--dataset", "dataset_id", required=True, help="Dataset (pixel) id.")
@click.option("--test-event-code", required=True, help="From Events Manager > Test events.")
@click.option("--channel", type=_CHANNELS, default="WHATSAPP", show_default=True)
@click.option(
    "--account",
    "account_id",
    help="WABA, Page or Instagram account id "
    "[default: the first of the channel linked to the dataset].",
)
@click.option("--event-type", type=_EVENT_TYPES, default="LEAD_SUBMITTED", show_default=True)
@click.option("--currency", help="ISO 4217, for a Purchase.")
@click.option("--value", help="Total value, for a Purchase.")
@click.option("--user-id", help="PSID (Messenger) or IGSID (Instagram).")
@click.option("--ctwa-clid", help="Click-to-WhatsApp ad click id.")
@click.option("--contact-id", help="Fill customer information and user id from this contact.")
@click.option("--email")
@click.option("--phone")
@click.option("--first-name")
@click.option("--last-name")
@click.option("--gender")
@click.option("--date-of-birth")
@click.option("--city")
@click.option("--state")
@click.option("--zip")
@click.option("--country")
@click.option("--external-id")
def test_event(**options: Any) -> None:
    """Send one test event to Meta's Test Events tool and print Meta's response.

    Reads the connection (and contact) from the broker's tables (CAPI_KAFKA_BOOTSTRAP_SERVERS,
    CAPI_TOPIC_CONNECTIONS), its token from CAPI_CREDENTIALS_DIR, and sends to CAPI_GRAPH_URL
    (the sandbox locally: see the README's walkthrough).
    """
    settings = _settings()
    _setup_logging("WARNING")
    from consumer.events.policy import Rules
    from consumer.events.records import CustomerInfo
    from consumer.meta.client import CapiClient
    from consumer.meta.credentials import CredentialStore
    from consumer.tools.send_test_event import (
        TestEventRequest,
        read_reference_tables,
        send_test_event,
    )

    try:
        tables, close_tables = read_reference_tables(settings, bool(options["contact_id"]))
    except CapiConsumerError as exc:
        _fail(str(exc))
    contact = tables.contacts.get(options["contact_id"]) if options["contact_id"] else None
    if options["contact_id"] and contact is None:
        _fail(f"contact {options['contact_id']} is not in {settings.topics.contacts}")
    request = TestEventRequest(
        contact=contact,
        connection_id=options["connection_id"],
        dataset_id=options["dataset_id"],
        test_event_code=options["test_event_code"],
        channel=Channel(options["channel"]),
        account_id=options["account_id"],
        event_type=EventType(options["event_type"]),
        customer_info=CustomerInfo(**{k: options[k] for k in CUSTOMER_FIELDS}),
        user_id=options["user_id"],
        ctwa_clid=options["ctwa_clid"],
        currency=options["currency"],
        value=options["value"],
    )
    client = CapiClient(
        settings.graph_url,
        settings.graph_api_version,
        timeout_s=settings.request_timeout_s,
        partner_agent=settings.partner_agent,
    )
    rules = Rules.from_settings(settings, require_click_id=False)
    try:
        result = send_test_event(
            request,
            tables.connections.get(request.connection_id),
            CredentialStore(settings.credentials_dir),
            client,
            rules,
        )
    finally:
        client.close()
        close_tables()
    if result.refusal is not None:
        _fail(f"not sent: {result.refusal.reason}: {result.refusal.detail}")
    if result.ok:
        if urlsplit(settings.graph_url).scheme == "http":  # loopback only: the sandbox
            where = (
                f"The Graph API sandbox at {settings.graph_url} took it (it never reaches "
                f"Meta): GET {settings.graph_url}/_sandbox/events lists it."
            )
        else:
            where = "Go to your Meta Events Manager to view the test event."
        click.echo(f"Conversions API test event sent. {where}")
        click.echo("")
        click.echo("Response")
        click.echo(result.response_json())
        return
    click.echo("Meta refused the test event.", err=True)
    click.echo("")
    click.echo("Response")
    click.echo(result.response_json() if result.error else result.error_text or "")
    sys.exit(1)


def _fail(message: str) -> NoReturn:
    click.echo(f"capi-consumer: {message}", err=True)
    sys.exit(1)


@main.command("replay-dlq")
@click.option(
    "--reason",
    "reasons",
    multiple=True,
    type=_Code([str(r) for r in sorted(REPLAYABLE_REASONS)]),
    help="Replay only dead letters with this reason (repeatable); default: all.",
)
@click.option("--from-beginning", is_flag=True, help="Ignore what earlier replays committed.")
@click.option("--dry-run", is_flag=True, help="Count what would be replayed; produce nothing.")
@one_line_errors
def replay_dlq(reasons: tuple[str, ...], from_beginning: bool, dry_run: bool) -> None:
    """Re-publish dead letters (all, or by reason) to the input topic."""
    settings = _settings()
    _setup_logging("WARNING")
    from consumer.tools.replay_dlq import replay_dead_letters

    report = replay_dead_letters(settings, reasons, from_beginning=from_beginning, dry_run=dry_run)
    lines = report.lines()
    if dry_run:
        lines[0] = "(dry run) would have " + lines[0]
    for line in lines:
        click.echo(line)


@main.command()
@click.option("--dataset", "datasets", multiple=True, help="Only this dataset (repeatable).")
@click.option(
    "--workspace", "workspaces", multiple=True, help="Only this workspace's datasets (repeatable)."
)
@click.option(
    "--days",
    default=7,
    show_default=True,
    help=f"UTC days of the trend, the last day included; at most {MAX_SIGNAL_DAYS} (retention).",
)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The last day of the window, YYYY-MM-DD [default: today, UTC].",
)
@click.option("--below", is_flag=True, help="Only the events under Meta's weekly minimum.")
@click.option("--json", "as_json", is_flag=True, help="JSON (docs/signals.md), not a table.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the report as one self-contained HTML page to this file.",
)
@one_line_errors
def signals(
    *,
    datasets: tuple[str, ...],
    workspaces: tuple[str, ...],
    days: int,
    until: dt.datetime | None,
    below: bool,
    as_json: bool,
    html_file: Path | None,
) -> None:
    """Per dataset and event: SENT in the last 7 days against Meta's minimum of 50, SENT per
    day, match-key coverage, and why events were not sent, with what to do.

    Reads the signals topic (CAPI_TOPIC_SIGNALS) to its end; days are UTC dates.
    """
    if not 1 <= days <= MAX_SIGNAL_DAYS:
        click.echo(
            f"capi-consumer signals: --days {days}: from 1 to {MAX_SIGNAL_DAYS} "
            f"(the signals topic keeps {MAX_SIGNAL_DAYS} days)",
            err=True,
        )
        sys.exit(2)
    settings = _settings(check_dirs=False)
    _setup_logging("WARNING")
    from consumer.tools.signals import (
        Selection,
        Window,
        build_report,
        read_signals,
        render_page,
        render_table,
    )

    started = time.monotonic()
    records = read_signals(settings)
    last_day = until.date() if until is not None else dt.datetime.now(dt.UTC).date()
    selection = Selection(frozenset(datasets), frozenset(workspaces), below)
    report = build_report(records, Window(last_day, days), selection)
    if html_file is not None:
        try:
            html_file.write_text(render_page(report), encoding="utf-8")
        except OSError as exc:
            _fail(f"{html_file}: cannot write: {exc.strerror or exc}")
    text = (
        json.dumps(report.as_json(), indent=2, ensure_ascii=False)
        if as_json
        else render_table(report)
    )
    with reader_may_leave():
        click.echo(text)
    click.echo(
        f"capi-consumer signals: read {report.records_read:,} records "
        f"({report.bytes_read:,} bytes) from {report.topic}, "
        f"{report.undecodable_records:,} undecodable (ignored); "
        f"{time.monotonic() - started:.1f} s",
        err=True,
    )


@main.command()
def check() -> None:
    """Validate the configuration and reach the broker; one line per problem."""
    settings = _settings(check_dirs=False)  # a missing credentials folder is one problem line
    from consumer.kafka.clients import topic_partitions
    from consumer.tools.check import (
        broker_problems,
        registry_problems,
        retry_topic_problems,
        settings_problems,
        topic_config,
    )

    problems = settings_problems(settings)
    if not any(p.startswith("CAPI_KAFKA_") for p in problems):  # else no client can connect
        try:
            partitions = topic_partitions(settings.kafka_config("admin"))
        except CapiConsumerError as exc:
            problems.append(str(exc))
        else:
            problems += broker_problems(settings, partitions) + registry_problems(settings)
            retry = settings.topics.retry
            if retry in partitions:
                try:
                    config = topic_config(settings.kafka_config("admin"), retry)
                except CapiConsumerError as exc:
                    problems.append(str(exc))
                else:
                    problems += retry_topic_problems(retry, config)
    for line in problems:
        click.echo(f"capi-consumer check: {line}", err=True)
    if problems:
        sys.exit(1)
    click.echo("capi-consumer check: ok")


if __name__ == "__main__":
    main()
