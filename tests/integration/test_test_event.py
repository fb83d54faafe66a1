"""`capi-consumer test-event` against the sandbox, with the connection read from Kafka."""

import json
import os
from typing import Any

import pytest

from consumer.kafka.codec import AvroCodec, SchemaStore
from consumer.tools.demo import produce_sample_traffic
from consumer.tools.samples import SampleWorld, sandbox_config
from consumer.tools.sandbox.process import SandboxProcess
from tests.cli import run_cli
from tests.integration.harness import write_credentials

pytestmark = pytest.mark.integration
WORLD = SampleWorld()


class _TestEvent:
    """`capi-consumer test-event` against a sandbox: call it with the command's arguments."""

    def __init__(self, env: dict[str, str], sandbox: SandboxProcess) -> None:
        self.env = env
        self.sandbox = sandbox

    def __call__(self, *args: str) -> Any:
        return run_cli(self.env, "test-event", *args)


@pytest.fixture
def run_test_event(kafka_bootstrap, topics, tmp_path):
    produce_sample_traffic(
        kafka_bootstrap,
        topics,
        AvroCodec(SchemaStore()),
        [],
        WORLD.connections(),
        contacts=WORLD.contacts(5),
    )
    creds = write_credentials(tmp_path / "creds", WORLD.credentials)
    with SandboxProcess(sandbox_config(WORLD)) as sandbox:
        env = {
            **os.environ,
            "CAPI_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "CAPI_TOPIC_CONNECTIONS": topics.connections,
            "CAPI_TOPIC_CONTACTS": topics.contacts,
            "CAPI_GRAPH_URL": sandbox.url,
            "CAPI_CREDENTIALS_DIR": str(creds),
        }

        yield _TestEvent(env, sandbox)


def test_sends_one_test_event_and_prints_metas_response(run_test_event):
    proc = run_test_event(
        "--connection",
        "conn-us",
        "--dataset",
        "ds-1",
        "--test-event-code",
        "TEST123",
        "--channel",
        "messenger",
        "--user-id",
        "psid-42",
        "--email",
        "Ann@Example.com",
        "--event-type",
        "purchase",
        "--currency",
        "EUR",
        "--value",
        "42.50",
    )
    assert proc.returncode == 0, proc.stderr
    assert "test event sent" in proc.stdout
    # against the sandbox, it says where to see the event: not Meta's Events Manager
    assert "Events Manager" not in proc.stdout
    assert "/_sandbox/events lists it" in proc.stdout
    response = json.loads(proc.stdout.split("Response\n", 1)[1])
    assert response["events_received"] == 1
    assert response["fbtrace_id"]
    events = run_test_event.sandbox.events()
    assert len(events) == 1
    assert events[0]["test_event_code"] == "TEST123"
    event = events[0]["event"]
    assert event["user_data"]["page_id"] == "page-200"
    assert event["custom_data"] == {"currency": "EUR", "value": 42.5}
    assert "Ann@Example.com" not in proc.stdout + proc.stderr


def test_whatsapp_test_event_needs_no_click_id(run_test_event):
    proc = run_test_event(
        "--connection",
        "conn-2",
        "--dataset",
        "ds-3",
        "--test-event-code",
        "T2",
        "--phone",
        "+33 6 12 34 56 78",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        run_test_event.sandbox.events()[0]["event"]["user_data"]["whatsapp_business_account_id"]
        == "waba-400"
    )


def test_local_refusal_is_one_line_and_exit_1(run_test_event):
    proc = run_test_event(
        "--connection",
        "conn-us",
        "--dataset",
        "ds-1",
        "--test-event-code",
        "T3",
        "--channel",
        "MESSENGER",
        "--account",
        "page-250",
        "--user-id",
        "p",
        "--email",
        "a@b.co",
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[0]]
    assert "not sent: RESTRICTED_REGION" in proc.stderr
    assert run_test_event.sandbox.stats()["accepted_requests"] == 0


def test_metas_refusal_is_printed_with_its_error(run_test_event):
    proc = run_test_event(
        "--connection",
        "conn-us",
        "--dataset",
        "ds-1",
        "--test-event-code",
        "T4",
        "--channel",
        "MESSENGER",
        "--account",
        "page-260",
        "--user-id",
        "p",
        "--email",
        "a@b.co",
    )
    assert proc.returncode == 1
    assert "Meta refused the test event" in proc.stderr
    error = json.loads(proc.stdout.split("Response\n", 1)[1])["error"]
    assert error["message"] == "Messaging Event Within Messaging Restrictive Region"
    assert error["code"] == 100


def test_unknown_connection(run_test_event):
    proc = run_test_event("--connection", "nope", "--dataset", "ds-1", "--test-event-code", "T")
    assert proc.returncode == 1
    assert "UNKNOWN_CONNECTION" in proc.stderr


def test_customer_information_and_psid_from_a_contact(run_test_event):
    proc = run_test_event(
        "--connection",
        "conn-us",
        "--dataset",
        "ds-1",
        "--test-event-code",
        "T5",
        "--channel",
        "MESSENGER",
        "--contact-id",
        "c-3",
    )
    assert proc.returncode == 0, proc.stderr
    user_data = run_test_event.sandbox.events()[0]["event"]["user_data"]
    assert user_data["page_scoped_user_id"] == "psid-c3"
    assert {"em", "ph", "fn", "ln", "country"} <= set(user_data)


def test_unknown_contact_is_refused(run_test_event):
    proc = run_test_event(
        "--connection",
        "conn-us",
        "--dataset",
        "ds-1",
        "--test-event-code",
        "T6",
        "--contact-id",
        "c-nobody",
    )
    assert proc.returncode == 1
    assert "contact c-nobody is not in" in proc.stderr
