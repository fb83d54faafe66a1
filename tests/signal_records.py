"""Signals records built in memory, as the service writes them, and read as the command does."""

from __future__ import annotations

from consumer.events.signals import DayCounts, SignalKey
from consumer.store.signals_topic import LatestRecords, SignalRecords


def record(
    partition: int,
    dataset_id: str,
    event_name: str,
    day: str,
    *,
    workspace_id: str = "ws-1",
    sent: int = 0,
    skipped: dict[str, int] | None = None,
    failed: dict[str, int] | None = None,
    match_keys: dict[str, int] | None = None,
) -> tuple[bytes, bytes]:
    """One signals record: its key and value bytes."""
    key = SignalKey(partition, dataset_id, event_name, day)
    counts = DayCounts(workspace_id, sent, skipped or {}, failed or {}, match_keys or {})
    return key.encode(), counts.encode(key)


def read(*records: tuple[bytes | None, bytes | None]) -> SignalRecords:
    """What the reader makes of these records, in this order."""
    latest = LatestRecords()
    for key, value in records:
        latest.add(key, value)
    return latest.records("signals")
