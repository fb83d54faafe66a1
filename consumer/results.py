"""`ConversionResult` records: exactly one per input message."""

from __future__ import annotations

from typing import Any

from .batching import SourceRef
from .dispatch import Outcome
from .errors import MetaErrorInfo
from .policy import Approved, Refusal
from .records import ResultStatus, Trigger

__all__ = ["refused", "resolved", "undecodable"]


def _base(source: SourceRef, trigger: Trigger | None, processed_at_ms: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": None,
        "workspace_id": None,
        "contact_id": None,
        "dataset_id": None,
        "channel": None,
        "event_name": None,
        "test_event_code": None,
        "triggered_at": None,
        "user_data_keys": [],
        "meta_response": None,
        "meta_error": None,
        "attempts": 0,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "processed_at": processed_at_ms,
    }
    if trigger is not None:
        record.update(
            event_id=trigger.event_id,
            workspace_id=trigger.workspace_id,
            contact_id=trigger.contact_id,
            dataset_id=trigger.dataset_id,
            channel=trigger.channel.value,
            event_name=trigger.event_type.event_name,
            test_event_code=trigger.test_event_code,
            triggered_at=trigger.occurred_at,
        )
    return record


def undecodable(source: SourceRef, detail: str, processed_at_ms: int) -> dict[str, Any]:
    record = _base(source, None, processed_at_ms)
    record.update(status=ResultStatus.FAILED.value, reason="UNDECODABLE", detail=detail)
    return record


def refused(
    source: SourceRef, trigger: Trigger, refusal: Refusal, processed_at_ms: int
) -> dict[str, Any]:
    record = _base(source, trigger, processed_at_ms)
    status = ResultStatus.SKIPPED if refusal.skipped else ResultStatus.FAILED
    record.update(status=status.value, reason=refusal.reason, detail=refusal.detail)
    return record


def resolved(
    source: SourceRef,
    trigger: Trigger,
    approved: Approved,
    outcome: Outcome,
    processed_at_ms: int,
) -> dict[str, Any]:
    record = _base(source, trigger, processed_at_ms)
    record.update(
        status=outcome.status.value,
        reason=outcome.reason,
        detail=outcome.detail,
        attempts=outcome.attempts,
        user_data_keys=list(approved.user_data_keys),
    )
    if outcome.meta_response is not None:
        r = outcome.meta_response
        record["meta_response"] = {
            "events_received": r.events_received,
            "fbtrace_id": r.fbtrace_id,
            "messages": list(r.messages),
        }
    if outcome.meta_error is not None:
        record["meta_error"] = _meta_error(outcome.meta_error)
    return record


def _meta_error(e: MetaErrorInfo) -> dict[str, Any]:
    return {
        "code": e.code,
        "subcode": e.subcode,
        "type": e.type,
        "message": e.message,
        "user_title": e.user_title,
        "user_msg": e.user_msg,
    }
