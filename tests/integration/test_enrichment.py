"""Enrichment from the tables while the service runs: bootstrap, live updates, erasure,
credential rotation."""

import time

import orjson
import pytest

from consumer.events.normalize import sha256_hex
from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.tools.demo import ResultReader, produce_sample_traffic
from consumer.tools.samples import SampleWorld, sandbox_config
from consumer.tools.sandbox.process import SandboxProcess
from tests.integration.harness import RunningApp, settings_for, write_credentials

pytestmark = pytest.mark.integration
CODEC = AvroCodec(SchemaStore())
WORLD = SampleWorld()


def _contact(contact_id, email):
    return {
        "contact_id": contact_id,
        "workspace_id": "ws-1",
        "email": email,
        "phone": None,
        "first_name": None,
        "last_name": None,
        "gender": None,
        "date_of_birth": None,
        "city": None,
        "state": None,
        "zip": None,
        "country": None,
        "external_id": None,
        "identities": [
            {"channel": "MESSENGER", "account_id": "page-200", "user_id": f"psid-of-{contact_id}"}
        ],
        "updated_at": 0,
    }


def _messenger_trigger(event_id, contact_id):
    base = next(
        t for t in WORLD.triggers(50, seed=3, only_valid=True) if t["channel"] == "MESSENGER"
    )
    return {
        **base,
        "event_id": event_id,
        "contact_id": contact_id,
        "channel_user_id": None,
        "customer_info": {k: None for k in base["customer_info"]},
    }


def _whatsapp_trigger(event_id, contact_id):
    base = next(
        t
        for t in WORLD.triggers(50, seed=3, only_valid=True)
        if t["channel_account_id"] == "waba-100"
    )
    return {**base, "event_id": event_id, "contact_id": contact_id, "ctwa_clid": None}


@pytest.fixture
def sandbox():
    with SandboxProcess(sandbox_config(WORLD), record_bodies=True) as process:
        yield process


def _events_by_id(sandbox):
    return {e["event"]["event_id"]: e["event"] for e in sandbox.events()}


def test_tables_are_bootstrapped_before_the_first_trigger(
    kafka_bootstrap, topics, sandbox, tmp_path
):
    referral = {
        "contact_id": "c-ref",
        "channel": "WHATSAPP",
        "channel_account_id": "waba-100",
        "ctwa_clid": "ClickFromReferral01",
        "ad_id": None,
        "source_url": None,
        "referred_at": int(time.time() * 1000) - 3_600_000,
    }
    produce_sample_traffic(
        kafka_bootstrap,
        topics,
        CODEC,
        [_messenger_trigger("m-1", "c-known"), _whatsapp_trigger("w-1", "c-ref")],
        WORLD.connections(),
        contacts=[_contact("c-known", "known@example.com")],
        referrals=[referral],
    )
    creds = write_credentials(tmp_path / "creds", WORLD.credentials)
    settings = settings_for(kafka_bootstrap, topics, sandbox.url, creds, state_dir=tmp_path / "s")
    reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
    with RunningApp(settings) as running:
        assert reader.read_until(2, 60)
    reader.close()
    assert {r["status"] for r in reader.results} == {"SENT"}
    events = _events_by_id(sandbox)
    assert events["m-1"]["user_data"]["page_scoped_user_id"] == "psid-of-c-known"
    assert events["m-1"]["user_data"]["em"] == sha256_hex("known@example.com")
    assert events["w-1"]["user_data"]["ctwa_clid"] == "ClickFromReferral01"
    registry = running.metrics.registry
    hits = {"source": "referrals", "result": "hit"}
    assert registry.get_sample_value("capi_enrichment_lookups_total", hits) == 1
    assert registry.get_sample_value("capi_table_keys", {"table": "contacts"}) == 1
    assert (
        registry.get_sample_value("capi_table_bootstrap_seconds", {"table": "contacts"}) or 0
    ) > 0


def test_live_update_and_erasure_reach_the_next_event(kafka_bootstrap, topics, sandbox, tmp_path):
    produce_sample_traffic(
        kafka_bootstrap,
        topics,
        CODEC,
        [],
        WORLD.connections(),
        contacts=[_contact("c-1", "first@example.com"), _contact("c-2", "erase@example.com")],
    )
    creds = write_credentials(tmp_path / "creds", WORLD.credentials)
    settings = settings_for(
        kafka_bootstrap, topics, sandbox.url, creds, state_dir=tmp_path / "s", batch_linger_ms=0
    )
    reader = ResultReader(kafka_bootstrap, topics.results, CODEC)

    def send(*triggers):
        produce_sample_traffic(kafka_bootstrap, topics, CODEC, list(triggers), [])
        assert reader.read_until(len(reader.results) + len(triggers), 60)

    with RunningApp(settings):
        send(_messenger_trigger("before", "c-1"), _messenger_trigger("erase-before", "c-2"))
        produce_sample_traffic(
            kafka_bootstrap,
            topics,
            CODEC,
            [],
            [],
            contacts=[_contact("c-1", "second@example.com")],
        )
        from confluent_kafka import Producer

        tombstone = Producer({"bootstrap.servers": kafka_bootstrap})
        tombstone.produce(topics.contacts, key=b"c-2", value=None)
        tombstone.flush(10)
        time.sleep(1.5)
        send(_messenger_trigger("after", "c-1"), _messenger_trigger("erase-after", "c-2"))
    reader.close()
    by_id = {r["event_id"]: r for r in reader.results}
    events = _events_by_id(sandbox)
    assert events["before"]["user_data"]["em"] == sha256_hex("first@example.com")
    assert events["after"]["user_data"]["em"] == sha256_hex("second@example.com")
    assert events["erase-before"]["user_data"]["em"] == sha256_hex("erase@example.com")
    # erased: nothing of the contact any more, so nothing to send
    assert (by_id["erase-after"]["status"], by_id["erase-after"]["reason"]) == (
        "FAILED",
        "INVALID_EVENT",
    )  # no PSID without the contact
    erased_hash = sha256_hex("erase@example.com")
    late_bodies = [
        r["body"]
        for r in sandbox.requests()
        if "erase-after" in r["body"] or '"after"' in r["body"]
    ]
    assert all(erased_hash not in body for body in late_bodies)


def test_rotated_token_is_used_without_a_restart(kafka_bootstrap, topics, tmp_path):
    world_config = sandbox_config(WORLD)
    tokens = world_config["tokens"]
    tokens["EAAB-rotated-token"] = tokens[WORLD.credentials["token-us"]]
    with SandboxProcess(world_config, record_bodies=True) as sandbox:
        creds = write_credentials(tmp_path / "creds", WORLD.credentials)
        settings = settings_for(kafka_bootstrap, topics, sandbox.url, creds, batch_linger_ms=0)
        trigger = next(
            t
            for t in WORLD.triggers(50, seed=5, only_valid=True)
            if t["connection_id"] == "conn-us"
        )
        produce_sample_traffic(kafka_bootstrap, topics, CODEC, [], WORLD.connections())
        reader = ResultReader(kafka_bootstrap, topics.results, CODEC)
        with RunningApp(settings):
            produce_sample_traffic(
                kafka_bootstrap, topics, CODEC, [{**trigger, "event_id": "a"}], []
            )
            assert reader.read_until(1, 60)
            (creds / "token-us").write_text("EAAB-rotated-token\n", encoding="utf-8")
            time.sleep(1.1)  # files are looked at no more than once a second
            produce_sample_traffic(
                kafka_bootstrap, topics, CODEC, [{**trigger, "event_id": "b"}], []
            )
            assert reader.read_until(2, 60)
        reader.close()
        tokens_used = [orjson.loads(r["body"])["access_token"] for r in sandbox.requests()]
    assert tokens_used == [WORLD.credentials["token-us"], "EAAB-rotated-token"]
    assert {r["status"] for r in reader.results} == {"SENT"}
