"""`capi-consumer test-event`: one test event, sent now, with Meta's answer shown.

The event goes through the same rules and payload code as the service, to Meta's Test Events
tool (a `test_event_code` from Events Manager > Data sources > Test events). It is not read from
or written to Kafka, except that the connection comes from the connections table.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.errors import CapiConsumerError, CapiError, MetaErrorInfo
from consumer.events.enrich import enrich
from consumer.events.policy import Refusal, Rules, decide
from consumer.events.records import (
    AssetType,
    Channel,
    Contact,
    CustomerInfo,
    EventType,
    MetaConnection,
    Trigger,
)
from consumer.events.results import MetaResponse, Reason
from consumer.meta.client import CapiClient
from consumer.meta.credentials import CredentialStore, MissingCredentialsError
from consumer.settings import Settings
from consumer.store.reference_tables import ReferenceTables

__all__ = [
    "TestEventRequest",
    "TestEventResult",
    "build_trigger",
    "read_reference_tables",
    "send_test_event",
]

_ASSET_TYPE = {
    Channel.WHATSAPP: AssetType.WHATSAPP_BUSINESS_ACCOUNT,
    Channel.MESSENGER: AssetType.FACEBOOK_PAGE,
    Channel.INSTAGRAM: AssetType.INSTAGRAM_ACCOUNT,
}


@dataclass(frozen=True, slots=True)
class TestEventRequest:
    """What `test-event` sends, as given on the command line."""

    connection_id: str
    dataset_id: str
    test_event_code: str
    channel: Channel = Channel.WHATSAPP
    account_id: str | None = None
    event_type: EventType = EventType.LEAD_SUBMITTED
    customer_info: CustomerInfo = field(default_factory=CustomerInfo)
    user_id: str | None = None
    ctwa_clid: str | None = None
    currency: str | None = None
    value: str | None = None
    contact: Contact | None = None


@dataclass(frozen=True, slots=True)
class TestEventResult:
    """Exactly one of: Meta's response, Meta's error, or the local refusal."""

    response: MetaResponse | None = None
    error: MetaErrorInfo | None = None
    error_text: str | None = None
    refusal: Refusal | None = None

    @property
    def ok(self) -> bool:
        return self.response is not None

    def response_json(self) -> str:
        """What the product's "response section" shows: Meta's answer as JSON."""
        payload: dict[str, Any]
        if self.response is not None:
            payload = {
                "events_received": self.response.events_received,
                "messages": list(self.response.messages),
                "fbtrace_id": self.response.fbtrace_id,
            }
        elif self.error is not None:
            e = self.error
            error = {
                "message": e.message,
                "type": e.type,
                "code": e.code,
                "error_subcode": e.subcode,
                "error_user_title": e.user_title,
                "error_user_msg": e.user_msg,
                "fbtrace_id": e.fbtrace_id,
            }
            payload = {"error": {k: v for k, v in error.items() if v is not None}}
        else:
            payload = {}
        return json.dumps(payload, indent=2, ensure_ascii=False)


def build_trigger(request: TestEventRequest, connection: MetaConnection, now_ms: int) -> Trigger:
    """The trigger a workflow step would fire for this test."""
    account = request.account_id or _default_account(request, connection)
    selected = {request.channel: account}
    return Trigger(
        event_id=f"test-{request.test_event_code}-{now_ms}",
        occurred_at=now_ms,
        workspace_id=connection.workspace_id,
        contact_id=request.contact.contact_id if request.contact else "test-event",
        channel=request.channel,
        channel_account_id=account,
        channel_user_id=request.user_id,
        connection_id=connection.connection_id,
        dataset_id=request.dataset_id,
        selected_whatsapp_business_account_id=selected.get(Channel.WHATSAPP),
        selected_page_id=selected.get(Channel.MESSENGER),
        selected_instagram_account_id=selected.get(Channel.INSTAGRAM),
        event_type=request.event_type,
        currency=request.currency,
        value=request.value,
        customer_info=request.customer_info,
        ctwa_clid=request.ctwa_clid,
        test_event_code=request.test_event_code,
    )


def _default_account(request: TestEventRequest, connection: MetaConnection) -> str:
    """The first asset of the channel's type linked to the dataset (else of the connection)."""
    wanted = _ASSET_TYPE[request.channel]
    dataset = connection.dataset(request.dataset_id)
    linked = dataset.linked_asset_ids if dataset else frozenset()
    candidates = [a for a in connection.assets if a.asset_type is wanted]
    for asset in candidates:
        if asset.asset_id in linked:
            return asset.asset_id
    return candidates[0].asset_id if candidates else ""


def send_test_event(
    request: TestEventRequest,
    connection: MetaConnection | None,
    credentials: CredentialStore,
    client: CapiClient,
    rules: Rules,
    *,
    now_ms: int | None = None,
) -> TestEventResult:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if connection is None:
        return TestEventResult(
            refusal=Refusal.fail(
                Reason.UNKNOWN_CONNECTION, f"connection {request.connection_id} is not known"
            )
        )
    trigger = build_trigger(request, connection, now_ms)
    trigger = enrich(trigger, request.contact, None, 0).trigger
    decision = decide(trigger, connection, now_ms, rules)
    if isinstance(decision, Refusal):
        return TestEventResult(refusal=decision)
    try:
        creds = credentials.for_connection(connection)
    except MissingCredentialsError as exc:
        return TestEventResult(refusal=Refusal.fail(Reason.MISSING_CREDENTIALS, str(exc)))
    try:
        response = client.send(request.dataset_id, [decision.event], creds, request.test_event_code)
    except CapiError as exc:
        return TestEventResult(error=exc.meta, error_text=str(exc))
    return TestEventResult(response=response)


def read_reference_tables(
    settings: Settings, with_contacts: bool
) -> tuple[ReferenceTables, Callable[[], None]]:
    """The connections (and contacts) tables, read into a throwaway state (a running instance
    may be using its own state folder), and the function that closes them. Raises a
    `CapiConsumerError` with one line when the broker or the tables cannot be read."""
    from consumer.kafka.clients import topic_partitions
    from consumer.service.loop import codec_for
    from consumer.store.sqlite import StateStore
    from consumer.store.table_reader import TableReader

    topic_partitions(settings.kafka_config("admin"))  # names a broker away
    quiet = {"log_level": "0"}  # librdkafka's own lines: a failure is said once
    tables = ReferenceTables.for_topics(codec_for(settings), settings.topics)
    scratch = tempfile.TemporaryDirectory(prefix="capi-test-event-")
    store = StateStore(Path(scratch.name)).open()

    def close() -> None:
        store.close()
        scratch.cleanup()

    needed = [tables.connections] + ([tables.contacts] if with_contacts else [])
    reader = TableReader(
        needed,
        {**settings.kafka_config("consumer"), **quiet},
        store,
        admin_config={**settings.kafka_config("admin"), **quiet},
    )
    try:
        reader.bootstrap(timeout_s=120)
    except Exception as exc:  # every failure is one line for the command
        close()
        raise CapiConsumerError(f"cannot read the reference tables: {exc}") from exc
    finally:
        reader.close()
    return tables, close
