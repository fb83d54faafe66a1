"""1,000 triggers through a real broker, the service, and the sandbox over HTTP."""

import re
from collections import Counter

import orjson
import pytest

from consumer.events.normalize import normalize_email, normalize_phone
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.tools.demo import ResultReader, produce_sample_traffic
from consumer.tools.samples import SampleWorld, sandbox_config
from consumer.tools.sandbox.process import SandboxProcess
from tests.integration.harness import RunningApp, settings_for, write_credentials

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
CODEC = AvroCodec(SchemaStore())
BATCH_SIZE = 100


def test_one_thousand_triggers(kafka_bootstrap, topics, tmp_path):
    world = SampleWorld()
    triggers = world.triggers(1000, seed=11)
    with SandboxProcess(sandbox_config(world), record_bodies=True) as sandbox:
        creds = write_credentials(tmp_path / "creds", world.credentials)
        settings = settings_for(kafka_bootstrap, topics, sandbox.url, creds, batch_size=BATCH_SIZE)
        expected = produce_sample_traffic(
            kafka_bootstrap, topics, CODEC, triggers, world.connections()
        )
        assert expected == 1000
        reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
        with RunningApp(settings) as running:
            assert reader.read_until(expected, 120), f"{len(reader.results)} results"
        reader.read(1.0)
        reader.close()
        accepted = sandbox.events()
        requests = sandbox.requests()

    assert not running.errors
    results = reader.results
    # exactly one result per input message
    assert len(results) == 1000
    sources = Counter((r["source_partition"], r["source_offset"]) for r in results)
    assert max(sources.values()) == 1
    # every SENT event was accepted by the sandbox exactly once, and nothing else was
    sent_ids = Counter(r["event_id"] for r in results if r["status"] == "SENT")
    accepted_ids = Counter(e["event"]["event_id"] for e in accepted)
    outcomes = Counter((r["status"], r["reason"]) for r in results)
    assert sent_ids == accepted_ids, outcomes
    assert max(accepted_ids.values()) == 1, outcomes
    assert len(sent_ids) > 600
    # the mix produced every outcome the samples aim at
    reasons = Counter(r["reason"] for r in results if r["reason"])
    for reason in (
        "RESTRICTED_REGION",
        "NO_CUSTOMER_INFORMATION",
        "NOT_AD_ATTRIBUTED",
        "CHANNEL_NOT_SELECTED",
        "CONNECTION_DISCONNECTED",
        "UNKNOWN_CONNECTION",
        "ASSET_NOT_LINKED",
        "DUPLICATE",
    ):
        assert reasons[reason] > 0, reason
    # no request over the batch limit; test events travelled apart
    assert all(r.get("events", 0) <= BATCH_SIZE for r in requests)
    for request in requests:
        body = orjson.loads(request["body"])
        codes = {body.get("test_event_code")}
        assert len(codes) == 1
    # no customer information in clear in any request body
    bodies = "\n".join(r["body"] for r in requests)
    strings: set[str] = set()
    for request in requests:
        _collect_strings(orjson.loads(request["body"]), strings)
    digit_runs = set(re.findall(r"\d+", bodies))
    for trigger in triggers:
        info = trigger["customer_info"]
        if info["email"] is None:
            continue  # the samples without customer information
        assert info["email"].strip() not in bodies
        assert normalize_email(info["email"]) not in bodies
        assert info["phone"] not in bodies
        try:
            digits = normalize_phone(info["phone"], info["country"])
        except ValueError:  # one in fifty sample phones is a typo: its digits as typed
            digits = re.sub(r"\D", "", info["phone"])
        assert digits not in digit_runs
        for name in (info["first_name"], info["last_name"], info["city"]):
            assert name not in strings
            assert name.lower() not in strings
    # tokens only in the body, never in the URL
    assert all("access_token" not in r["query"] for r in requests)


def _collect_strings(node, out):
    if isinstance(node, dict):
        for value in node.values():
            _collect_strings(value, out)
    elif isinstance(node, list):
        for value in node:
            _collect_strings(value, out)
    elif isinstance(node, str):
        out.add(node)
