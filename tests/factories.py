"""Literal records for tests."""

from typing import Any

from consumer.events.records import CUSTOMER_FIELDS
from consumer.events.results import ConversionResult

NOW_MS = 1_780_000_000_000


def customer_info(**overrides: Any) -> dict[str, Any]:
    info: dict[str, Any] = dict.fromkeys(CUSTOMER_FIELDS)
    info.update(overrides)
    return info


def trigger_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "evt-1",
        "occurred_at": NOW_MS - 60_000,
        "workspace_id": "ws-1",
        "contact_id": "c-1",
        "channel": "WHATSAPP",
        "channel_account_id": "waba-1",
        "channel_user_id": None,
        "connection_id": "conn-1",
        "dataset_id": "ds-1",
        "selected_whatsapp_business_account_id": "waba-1",
        "selected_page_id": None,
        "selected_instagram_account_id": None,
        "event_type": "LEAD_SUBMITTED",
        "currency": None,
        "value": None,
        "customer_info": customer_info(email="John_Smith@Gmail.com", phone="+1 650 555 1212"),
        "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
        "test_event_code": None,
    }
    record.update(overrides)
    return record


def connection_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "connection_id": "conn-1",
        "workspace_id": "ws-1",
        "status": "ACTIVE",
        "credential_ref": "token-1",
        "app_secret_ref": None,
        "assets": [
            {
                "asset_type": "WHATSAPP_BUSINESS_ACCOUNT",
                "asset_id": "waba-1",
                "registration_country": "US",
            },
            {"asset_type": "FACEBOOK_PAGE", "asset_id": "page-1", "registration_country": "US"},
            {"asset_type": "INSTAGRAM_ACCOUNT", "asset_id": "ig-1", "registration_country": "BR"},
            {"asset_type": "FACEBOOK_PAGE", "asset_id": "page-de", "registration_country": "DE"},
            {"asset_type": "INSTAGRAM_ACCOUNT", "asset_id": "ig-jp", "registration_country": "JP"},
            {
                "asset_type": "WHATSAPP_BUSINESS_ACCOUNT",
                "asset_id": "waba-fr",
                "registration_country": "FR",
            },
        ],
        "datasets": [
            {
                "dataset_id": "ds-1",
                "linked_asset_ids": ["waba-1", "page-1", "ig-1", "page-de", "ig-jp", "waba-fr"],
            },
            {"dataset_id": "ds-2", "linked_asset_ids": ["waba-1"]},
        ],
        "updated_at": 0,
    }
    record.update(overrides)
    return record


def result_record(result: ConversionResult) -> dict[str, Any]:
    """A result as the `ConversionResult` schema's record: what fastavro writes, the
    reference the service's own writer (`events/result_avro.py`) is held to."""
    t = result.trigger
    record: dict[str, Any] = {
        "event_id": None if t is None else t.event_id,
        "workspace_id": None if t is None else t.workspace_id,
        "contact_id": None if t is None else t.contact_id,
        "dataset_id": None if t is None else t.dataset_id,
        "channel": None if t is None else str(t.channel),
        "event_name": None if t is None else t.event_type.event_name,
        "status": str(result.status),
        "reason": None if result.reason is None else str(result.reason),
        "detail": result.detail,
        "test_event_code": None if t is None else t.test_event_code,
        "user_data_keys": list(result.user_data_keys),
        "meta_response": None,
        "meta_error": None,
        "attempts": result.attempts,
        "source_topic": result.source.topic,
        "source_partition": result.source.partition,
        "source_offset": result.source.offset,
        "triggered_at": None if t is None else t.occurred_at,
        "processed_at": result.processed_at,
    }
    if result.meta_response is not None:
        r = result.meta_response
        record["meta_response"] = {
            "events_received": r.events_received,
            "fbtrace_id": r.fbtrace_id,
            "messages": list(r.messages),
        }
    if result.meta_error is not None:
        e = result.meta_error
        record["meta_error"] = {
            "code": e.code,
            "subcode": e.subcode,
            "type": e.type,
            "message": e.message,
            "user_title": e.user_title,
            "user_msg": e.user_msg,
        }
    return record
