"""`capi-consumer signals` on a real broker: the signals topic, written in transactions, read to
its end (the latest record of a key, tombstones, a record that is not a signals record), its
table, JSON and HTML; the HTML opened in headless Chromium and its screenshot checked for the
charts."""

import json
import os
import re
import shutil
import socket
import subprocess
import uuid

import pytest
from confluent_kafka import Producer

from consumer.events.signals import DayCounts, SignalKey
from consumer.kafka.topics import COMPACT, TopicSpec, ensure_topics
from consumer.tools.signals.page import BAR_COLOUR, MINIMUM_COLOUR
from tests.cli import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
UNTIL = "2026-12-05"
WEEK = [f"2026-11-{d}" for d in (29, 30)] + [f"2026-12-0{d}" for d in range(1, 6)]
LEAD_PER_DAY = [3, 0, 5, 8, 2, 0, 12]  # ds-1's Lead, SENT per day of the week: 30, below 50


def _record(partition, dataset_id, event_name, day, workspace_id, sent, **counts):
    key = SignalKey(partition, dataset_id, event_name, day)
    value = DayCounts(
        workspace_id,
        sent,
        counts.get("skipped", {}),
        counts.get("failed", {}),
        counts.get("match_keys", {}),
    )
    return partition, key.encode(), value.encode(key)


def _committed_records():
    """What the service would have written: ds-1's Lead below the minimum, spread over the
    three partitions; ds-2's Purchase above it."""
    out = []
    for day, sent in zip(WEEK, LEAD_PER_DAY, strict=True):
        first, second = sent // 2, sent - sent // 2
        out.append(
            _record(0, "ds-1", "Lead", day, "ws-1", first, match_keys={"em": first, "ph": first})
        )
        out.append(
            _record(
                2,
                "ds-1",
                "Lead",
                day,
                "ws-1",
                second,
                skipped={"CHANNEL_NOT_SELECTED": 1},
                match_keys={"em": second, "ctwa_clid": second},
            )
        )
    out += [
        _record(1, "ds-2", "Purchase", "2026-12-01", "ws-2", 40, match_keys={"em": 40}),
        _record(1, "ds-2", "Purchase", "2026-12-04", "ws-2", 1, match_keys={"em": 1}),
        # superseded below by a later record of the same key
        _record(1, "ds-2", "Purchase", "2026-12-04", "ws-2", 25, failed={"ASSET_NOT_LINKED": 2}),
        # counts of a day past the retention: deleted by a tombstone
        _record(0, "ds-3", "Lead", "2026-12-03", "ws-3", 99),
        (0, SignalKey(0, "ds-3", "Lead", "2026-12-03").encode(), None),
        (1, b"not a signals key", b"{"),
    ]
    return out


def _produce(bootstrap, topic, records):
    """`records` in one transaction, each to its partition."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "transactional.id": f"signals-test-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for partition, key, value in records:
        producer.produce(topic, key=key, value=value, partition=partition)
    producer.commit_transaction(30)


@pytest.fixture(scope="module")
def signals_topic(kafka_bootstrap):
    topic = f"signals-{uuid.uuid4().hex[:10]}"
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, [TopicSpec(topic, 3, COMPACT)])
    records = _committed_records()
    # in two transactions, as the service writes them (an aborted one is left out: the
    # embedded broker shows aborted records to read_committed readers, Apache Kafka does not)
    _produce(kafka_bootstrap, topic, records[:-3])
    _produce(kafka_bootstrap, topic, records[-3:])
    return topic, len(records)


def _env(bootstrap, topic):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPI_")}
    return {**env, "CAPI_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "CAPI_TOPIC_SIGNALS": topic}


def _signals(env, *args):
    done = run_cli(env, "signals", "--until", UNTIL, *args)
    assert done.returncode == 0, done.stderr
    return done


def test_the_table(kafka_bootstrap, signals_topic):
    topic, records = signals_topic
    done = _signals(_env(kafka_bootstrap, topic))
    lines = done.stdout.splitlines()
    assert lines[0] == f"{topic}: 2026-11-29 to 2026-12-05 (7 UTC days)"
    assert lines[3].split() == [
        *("DATASET", "EVENT", "WORKSPACE", "SENT", "7", "DAYS", "MINIMUM", "SENT", "PER"),
        *("DAY,", "11-29", "TO", "12-05"),
    ]
    assert lines[4].split() == [
        *("ds-1", "Lead", "ws-1", "30", "below,", "20", "to", "go"),
        *map(str, LEAD_PER_DAY),
    ]
    assert lines[5].split() == ["match", "keys", "em", "100%", "ph", "47%", "ctwa_clid", "53%"]
    assert lines[6].split()[:5] == ["not", "sent", "SKIPPED", "CHANNEL_NOT_SELECTED", "7"]
    assert lines[8].split() == [
        *("ds-2", "Purchase", "ws-2", "65", "reached"),
        *("0", "0", "40", "0", "0", "25", "0"),
    ]
    assert lines[-1] == "1 of 2 below 50 SENT in the last 7 days."
    assert "ds-3" not in done.stdout
    [summary] = done.stderr.splitlines()
    assert summary.startswith(f"capi-consumer signals: read {records} records (")
    assert re.search(rf"from {topic}, 1 undecodable \(ignored\); [0-9.]+ s$", summary), summary


def test_the_json(kafka_bootstrap, signals_topic):
    topic, records = signals_topic
    report = json.loads(_signals(_env(kafka_bootstrap, topic), "--json").stdout)
    assert (report["topic"], report["records_read"], report["undecodable_records"]) == (
        topic,
        records,
        1,
    )
    lead, purchase = report["signals"]
    assert (lead["dataset_id"], lead["event_name"], lead["workspace_id"]) == (
        "ds-1",
        "Lead",
        "ws-1",
    )
    assert [day["sent"] for day in lead["per_day"]] == LEAD_PER_DAY
    assert (lead["week_sent"], lead["below_minimum"], lead["to_minimum"]) == (30, True, 20)
    assert lead["match_keys"] == [
        {"key": "em", "events": 30, "share": 1.0},
        {"key": "ph", "events": 14, "share": 0.4667},
        {"key": "ctwa_clid", "events": 16, "share": 0.5333},
    ]
    assert [(r["status"], r["reason"], r["events"]) for r in lead["not_sent"]] == [
        ("SKIPPED", "CHANNEL_NOT_SELECTED", 7)
    ]
    assert (purchase["dataset_id"], purchase["week_sent"], purchase["below_minimum"]) == (
        "ds-2",
        65,
        False,
    )
    assert purchase["not_sent"][0]["reason"] == "ASSET_NOT_LINKED"
    assert purchase["not_sent"][0]["events"] == 2


@pytest.mark.parametrize(
    ("options", "kept"),
    [
        (["--below"], ["ds-1"]),
        (["--dataset", "ds-2"], ["ds-2"]),
        (["--workspace", "ws-2", "--workspace", "ws-1"], ["ds-1", "ds-2"]),
        (["--workspace", "ws-9"], []),
    ],
)
def test_the_filters(kafka_bootstrap, signals_topic, options, kept):
    env = _env(kafka_bootstrap, signals_topic[0])
    report = json.loads(_signals(env, "--json", *options).stdout)
    assert [s["dataset_id"] for s in report["signals"]] == kept


def test_the_html_page_in_a_headless_browser(kafka_bootstrap, signals_topic, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium not found: `make test` installs it (Debian package chromium)")
    from PIL import Image

    page_file = tmp_path / "signals.html"
    _signals(_env(kafka_bootstrap, signals_topic[0]), "--html", str(page_file))
    page = page_file.read_text()
    bars = re.findall(rf'width="(\d+)" height="(\d+)" fill="{BAR_COLOUR}"', page)
    assert len(bars) == sum(1 for sent in LEAD_PER_DAY if sent) + 2  # and ds-2's two days
    bar_area = sum(int(width) * int(height) for width, height in bars)
    screenshot = tmp_path / "signals.png"
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            # nothing may leave the machine: no proxy answers, no name resolves
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--window-size=1200,1600",
            "--force-device-scale-factor=1",
            "--hide-scrollbars",
            page_file.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert screenshot.exists(), done.stderr[-2000:]
    with Image.open(screenshot) as image:
        counted = image.convert("RGB").getcolors(image.width * image.height)
    assert counted is not None
    colours = {colour: n for n, colour in counted}
    bar_pixels = colours.get(_rgb(BAR_COLOUR), 0)
    # every bar is on the screen; the dashed minimum line crosses a few of their pixels
    assert 0.9 * bar_area <= bar_pixels <= bar_area, (bar_pixels, bar_area)
    assert colours.get(_rgb(MINIMUM_COLOUR), 0) >= 2 * 300  # a dashed line in each chart


def _rgb(colour):
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def test_failures_are_one_line(kafka_bootstrap):
    too_long = run_cli(_env(kafka_bootstrap, "signals"), "signals", "--days", "29")
    assert too_long.returncode == 2
    assert too_long.stderr.splitlines() == [
        "capi-consumer signals: --days 29: from 1 to 28 (the signals topic keeps 28 days)"
    ]
    missing = run_cli(_env(kafka_bootstrap, "no-such-signals"), "signals")
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [
        f"capi-consumer: topic no-such-signals does not exist on {kafka_bootstrap} "
        "(capi-consumer topics create)"
    ]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{s.getsockname()[1]}"  # bound, not listening
        unreachable = run_cli(_env(nobody, "signals"), "signals")
    assert unreachable.returncode == 1
    [line] = unreachable.stderr.splitlines()
    assert line.startswith(f"capi-consumer: broker {nobody}: ")
