"""The exact request body for every channel and event type, compared with a stored snapshot.

A change to the payload shows up here as a diff to review. To accept an intended change:
`UPDATE_SNAPSHOTS=1 make test-unit`, then read the diff of the snapshot file before committing.
"""

import json
import os
from pathlib import Path

import orjson
import pytest

from consumer.events.policy import Approved, Rules, decide
from consumer.events.records import Channel, EventType, MetaConnection, Trigger
from consumer.meta.client import CapiClient, Credentials
from consumer.settings import DEFAULT_RESTRICTED_COUNTRIES, Secret
from tests.factories import NOW_MS, connection_record, customer_info, trigger_record

SNAPSHOT = Path(__file__).parent / "snapshots" / "request_bodies.json"
RULES = Rules(restricted_countries=DEFAULT_RESTRICTED_COUNTRIES)
CONNECTION = MetaConnection.from_avro(connection_record())
CREDS = Credentials(Secret("EAAB-snapshot-token"), Secret("snapshot-app-secret"))
ACCOUNTS: dict[Channel, dict[str, str | None]] = {
    Channel.WHATSAPP: {
        "channel_account_id": "waba-1",
        "selected_whatsapp_business_account_id": "waba-1",
    },
    Channel.MESSENGER: {
        "channel_account_id": "page-1",
        "channel_user_id": "psid-1",
        "selected_whatsapp_business_account_id": None,
        "selected_page_id": "page-1",
    },
    Channel.INSTAGRAM: {
        "channel_account_id": "ig-1",
        "channel_user_id": "igsid-1",
        "selected_whatsapp_business_account_id": None,
        "selected_instagram_account_id": "ig-1",
    },
}
INFO = customer_info(
    email=" Ann.Lee@Example.COM ",
    phone="+1 (650) 555-1212",
    first_name="Zoë",
    last_name="O'Neil",
    gender="Female",
    date_of_birth="March 4th, 1990",
    city="San José",
    state="California",
    zip="95112-4401",
    country="United States",
    external_id="crm-7",
)


def _bodies():
    client = CapiClient("https://graph.example", "v24.0", partner_agent="capi-consumer")
    bodies = {}
    for channel in Channel:
        for event_type in EventType:
            purchase = event_type is EventType.PURCHASE
            record = trigger_record(
                event_id=f"evt-{channel.value.lower()}-{event_type.value.lower()}",
                channel=channel.value,
                event_type=event_type.value,
                currency="USD" if purchase else None,
                value="129.90" if purchase else None,
                customer_info=INFO,
                **ACCOUNTS[channel],
            )
            decision = decide(Trigger.from_avro(record), CONNECTION, NOW_MS, RULES)
            assert isinstance(decision, Approved), decision
            body = client.body([decision.event], CREDS, None)
            bodies[f"{channel.value}/{event_type.value}"] = orjson.loads(body)
    client.close()
    return bodies


def test_request_bodies_match_the_snapshot():
    bodies = _bodies()
    assert len(bodies) == 3 * 14
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not SNAPSHOT.exists():
        SNAPSHOT.write_text(json.dumps(bodies, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        pytest.fail(f"snapshot written to {SNAPSHOT}; review it and run again")
    assert bodies == json.loads(SNAPSHOT.read_text())
