"""What the service says about each input message: exactly one `ConversionResult`, with a reason
code, and for what an operator can fix a dead letter of the received bytes."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from consumer.errors import MetaErrorInfo
from consumer.events.records import ResultStatus, Trigger

__all__ = [
    "DEAD_LETTER_REASONS",
    "REPLAYABLE_REASONS",
    "REPLAY_HEADER",
    "ConversionResult",
    "DedupEntry",
    "DedupStatus",
    "MetaResponse",
    "Partition",
    "RawMessage",
    "Reason",
    "SourceRef",
    "partition_names",
]


class Reason(enum.StrEnum):
    """The `reason` of a result: why it was SKIPPED (by design) or FAILED (needs attention)."""

    RESTRICTED_REGION = "RESTRICTED_REGION"
    CHANNEL_NOT_SELECTED = "CHANNEL_NOT_SELECTED"
    NO_CUSTOMER_INFORMATION = "NO_CUSTOMER_INFORMATION"
    NOT_AD_ATTRIBUTED = "NOT_AD_ATTRIBUTED"
    DUPLICATE = "DUPLICATE"
    CONNECTION_DISCONNECTED = "CONNECTION_DISCONNECTED"
    UNDECODABLE = "UNDECODABLE"
    INVALID_EVENT = "INVALID_EVENT"
    EVENT_TOO_OLD = "EVENT_TOO_OLD"
    UNKNOWN_CONNECTION = "UNKNOWN_CONNECTION"
    ASSET_NOT_LINKED = "ASSET_NOT_LINKED"
    MISSING_CREDENTIALS = "MISSING_CREDENTIALS"
    META_AUTH_ERROR = "META_AUTH_ERROR"
    META_REJECTED = "META_REJECTED"
    RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
    DATASET_UNAVAILABLE = "DATASET_UNAVAILABLE"


# FAILED results an operator can fix and replay get a dead-letter copy of their input.
DEAD_LETTER_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.UNDECODABLE,
        Reason.UNKNOWN_CONNECTION,
        Reason.ASSET_NOT_LINKED,
        Reason.MISSING_CREDENTIALS,
        Reason.META_AUTH_ERROR,
        Reason.RETRIES_EXHAUSTED,
        Reason.DATASET_UNAVAILABLE,
    }
)
# The reasons `replay-dlq --reason` picks dead letters by: those above, and INVALID_EVENT, whose
# dead letters are the events a wrong clock put too far ahead and the unforeseen rule errors.
REPLAYABLE_REASONS: frozenset[Reason] = DEAD_LETTER_REASONS | {Reason.INVALID_EVENT}
_DUPLICATE = Reason.DUPLICATE  # a module global: see `records.py` on reading enum members
# A replayed message may be processed again when its earlier outcome was FAILED.
REPLAY_HEADER = "capi.replay"


Partition = tuple[str, int]  # (topic, partition number)


def partition_names(partitions: Iterable[Partition]) -> str:
    """Partitions as the logs write them: `topic[p],topic[q]`, `-` for none."""
    return ",".join(f"{topic}[{partition}]" for topic, partition in partitions) or "-"


class SourceRef(NamedTuple):
    """Where an input message came from: its position, the one type for it (held results,
    offsets, the outbox). A named tuple: a key of several dicts for every event, hashed and
    compared in C.

    The hot path builds it with `_make`, as it builds the other named tuples it makes for every
    event (`BatchKey`, `SignalKey`, `DedupEntry`): calling the class goes through
    `type.__call__` to the generated Python `__new__`, where `_make` is one call that hands the
    values to `tuple.__new__` (249 against 478 ns)."""

    topic: str
    partition: int
    offset: int

    @property
    def topic_partition(self) -> Partition:
        return self.topic, self.partition


@dataclass(slots=True)
class RawMessage:
    """A received message's key and value as they arrived: what a dead letter carries, for
    an operator to fix and replay, and what a parked event keeps of its trigger."""

    key: bytes | None
    value: bytes | None


class DedupStatus(StrEnum):
    """How an `event_id` was resolved, as the dedup table knows it: a result's status, parked
    in the retry topic, or being processed now. Any of them makes a later copy a DUPLICATE."""

    SENT = "SENT"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    PARKED = "PARKED"
    IN_PROGRESS = "IN_PROGRESS"


_DEDUP_STATUS = {
    ResultStatus.SENT: DedupStatus.SENT,
    ResultStatus.SKIPPED: DedupStatus.SKIPPED,
    ResultStatus.FAILED: DedupStatus.FAILED,
}


class DedupEntry(NamedTuple):
    """An `event_id` and how it was resolved: what makes a later copy a DUPLICATE."""

    event_id: str
    status: DedupStatus


@dataclass(frozen=True, slots=True)
class MetaResponse:
    """Meta's answer to a request that it accepted."""

    events_received: int
    fbtrace_id: str
    messages: tuple[str, ...] = ()


@dataclass(slots=True)
class ConversionResult:
    """The one record published for an input message (the `ConversionResult` schema)."""

    source: SourceRef
    status: ResultStatus
    processed_at: int
    reason: Reason | None = None
    detail: str | None = None
    trigger: Trigger | None = None
    user_data_keys: tuple[str, ...] = ()
    meta_response: MetaResponse | None = None
    meta_error: MetaErrorInfo | None = None
    attempts: int = 0

    @property
    def event_id(self) -> str | None:
        return None if self.trigger is None else self.trigger.event_id

    @property
    def dedup_entry(self) -> DedupEntry | None:
        """What this result adds to the dedup table (nothing for a duplicate or no event id)."""
        event_id = self.event_id
        if not event_id or self.reason is _DUPLICATE:
            return None
        return DedupEntry._make((event_id, _DEDUP_STATUS[self.status]))

    def dead_letter_error(self) -> str:
        """The `capi.error` header of the dead letter."""
        return f"{self.reason}: {self.detail or ''}"

    def dead_letter_headers(self) -> list[tuple[str, str | bytes | None]]:
        """The headers of the dead letter: why, and where its input came from."""
        source = self.source
        return [
            ("capi.error", self.dead_letter_error().encode()),
            ("capi.source.topic", source.topic.encode()),
            ("capi.source.partition", str(source.partition).encode()),
            ("capi.source.offset", str(source.offset).encode()),
        ]
