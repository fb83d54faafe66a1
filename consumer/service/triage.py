"""Triage: one consumed message in, what to do with it out. Publishes nothing, sends nothing.

Order of the questions, each answered from local state: may the partition be processed yet
(dedup restore, schema registry)? Was this message resolved before a crash, with a visible
result or with Meta's answer kept in the outbox? Can it be decoded? Is its `event_id` a
duplicate? Then enrichment, the rules, and the credentials: a result now, or an event to send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

from confluent_kafka import KafkaError, Message

from consumer.errors import (
    CapiConsumerError,
    DecodeError,
    FatalError,
    FencedError,
    SchemaUnavailableError,
)
from consumer.events.enrich import enrich, referral_key, wants_referral
from consumer.events.parking import ParkedEvent
from consumer.events.policy import Refusal, Rules, decide, seconds_ahead
from consumer.events.records import TRIGGER_AVRO_TYPES, ResultStatus, Trigger
from consumer.events.results import (
    REPLAY_HEADER,
    ConversionResult,
    DedupStatus,
    Partition,
    RawMessage,
    Reason,
    SourceRef,
)
from consumer.kafka.clients import FENCED, PARTITION_EOF
from consumer.kafka.codec import AvroCodec
from consumer.meta.batching import BatchKey, OutgoingEvent
from consumer.meta.credentials import CredentialStore, MissingCredentialsError
from consumer.ops.metrics import Metrics
from consumer.store.dedup import Dedup
from consumer.store.outbox import Outbox
from consumer.store.parked import ParkedTable
from consumer.store.recovery import PartitionRecovery
from consumer.store.reference_tables import Lookups

__all__ = [
    "AlreadyResolved",
    "Recover",
    "Resolved",
    "Rewind",
    "Send",
    "Triage",
    "Unpark",
    "Verdict",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rewind:
    """The partition may not be processed yet: read it again from this message later."""

    source: SourceRef
    schema_unavailable: bool = False


@dataclass(frozen=True, slots=True)
class AlreadyResolved:
    """A result for this message is visible already (its instance died before committing)."""

    source: SourceRef


@dataclass(frozen=True, slots=True)
class Recover:
    """Meta answered this message before a crash: publish the kept answer, send nothing."""

    source: SourceRef


@dataclass(slots=True)
class Resolved:
    """The message's result is known now (`parked`: the result of a parked event)."""

    result: ConversionResult
    dead_letter: RawMessage | None = None
    parked: ParkedEvent | None = None


@dataclass(slots=True)
class Send:
    """An approved event for Meta."""

    item: OutgoingEvent
    key: BatchKey


@dataclass(frozen=True, slots=True)
class Unpark:
    """A parked event whose result is published already (by another owner of its partition,
    or before its parking's end reached the local table): its parking ends, nothing is sent."""

    parked: ParkedEvent


Verdict = Rewind | AlreadyResolved | Recover | Resolved | Send


class Triage:
    """Decides each consumed message from the dedup table, the outbox and the reference tables."""

    def __init__(
        self,
        *,
        codec: AvroCodec,
        dedup: Dedup,
        parked: ParkedTable,
        restore: PartitionRecovery,
        outbox: Outbox,
        tables: Lookups,
        credentials: CredentialStore,
        rules: Rules,
        owned: Collection[Partition],
        metrics: Metrics,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._decode_trigger = codec.typed_decoder(
            "ConversionTriggered", TRIGGER_AVRO_TYPES, Trigger.from_avro
        )
        self._dedup = dedup
        self._parked = parked
        self._restore = restore
        self._outbox = outbox
        self._tables = tables
        self._credentials = credentials
        self._rules = rules
        # assets Meta refused as in a messaging-restrictive region (Meta's answers, collected
        # on the main loop): their next events are skipped without a request
        self._restricted_assets: set[str] = set()
        self._owned = owned
        self._parked_ids: set[str] = set()  # the consumed batch's event ids that are parked
        self._window_ms = rules.attribution_window_s * 1000
        self._metrics = metrics
        self._clock_ms = clock_ms

    def batch(self, msgs: list[Message]) -> list[Verdict]:
        """The verdicts of a consumed batch, in order; after a `Rewind`, the partition's later
        messages get none (they are read again)."""
        # decoded first, so that the batch's event ids are looked up in one query
        decoded = [self._decode(msg) for msg in msgs]
        triggers = [d for d in decoded if isinstance(d, Trigger)]
        now_ms = self._clock_ms()  # the batch's time: it is handled within a few milliseconds
        self._observe_clock(triggers, now_ms)
        event_ids = [t.event_id for t in triggers]
        self._dedup.look_up(event_ids)
        self._parked_ids = self._parked.parked_among(event_ids) if event_ids else set()
        self._prefetch(triggers)
        verdicts: list[Verdict] = []
        rewound: set[tuple[str, int]] = set()
        for msg, data in zip(msgs, decoded, strict=True):
            if rewound and (msg.topic(), msg.partition()) in rewound:
                continue
            verdict = self._message(msg, data, now_ms)
            if isinstance(verdict, Rewind):
                rewound.add(verdict.source.topic_partition)
            if verdict is not None:
                verdicts.append(verdict)
        self._dedup.forget_looked_up()
        self._parked_ids = set()
        return verdicts

    def _observe_clock(self, triggers: list[Trigger], now_ms: int) -> None:
        """How far each consumed trigger is ahead of the clock, refused or not: one wrong clock
        shifts them all, a wrong producer a few. None is, most of the time: counted at once."""
        m = self._metrics
        if not triggers:
            return
        if max(t.occurred_at for t in triggers) <= now_ms:
            m.observe(m.event_ahead_of_clock, 0.0, len(triggers))
            return
        for trigger in triggers:
            m.observe(m.event_ahead_of_clock, seconds_ahead(trigger, now_ms))

    def _message(
        self, msg: Message, data: Trigger | CapiConsumerError | None, now_ms: int
    ) -> Verdict | None:
        """What to do with one message (None: nothing to do: an error event of the consumer, or
        a message of a partition no longer ours)."""
        error = msg.error()
        if error is not None:
            _consumer_error(error)
            return None
        source = _source(msg)
        if source.topic_partition not in self._owned:
            return None  # fetched before its partition was let go: its next owner reads it
        if self._restore.is_restoring(source.partition):
            return Rewind(source)  # assigned a moment ago: its dedup entries are not restored
        event_id = data.event_id if isinstance(data, Trigger) else None
        if self._restore.already_resolved(source.partition, source.offset, event_id):
            return AlreadyResolved(source)
        if self._outbox.has(source.topic, source.partition, source.offset):
            if event_id is not None:
                # in progress from now on: a copy later in this batch is a duplicate
                self._dedup.begin(event_id)
            return Recover(source)
        if isinstance(data, SchemaUnavailableError):
            log.warning(
                "schema registry unavailable topic=%s partition=%d offset=%d: %s",
                source.topic,
                source.partition,
                source.offset,
                data,
            )
            return Rewind(source, schema_unavailable=True)
        received = RawMessage(msg.key(), msg.value())
        if not isinstance(data, Trigger):  # a DecodeError
            return _undecodable(source, str(data), received, now_ms)
        trigger = data
        prior = self._dedup.seen(trigger.event_id)
        if prior is None and trigger.event_id in self._parked_ids:
            prior = DedupStatus.PARKED  # parked by this partition's previous owner
        if prior is not None and not (prior is DedupStatus.FAILED and _is_replay(msg)):
            detail = f"event_id was already processed ({prior})"
            return Resolved(Refusal.skip(Reason.DUPLICATE, detail).result(source, trigger, now_ms))
        self._dedup.begin(trigger.event_id)
        return self._decide(source, self._enrich(trigger), received, now_ms)

    def parked(self, parked: ParkedEvent) -> Resolved | Send | Unpark | None:
        """What to do with a parked event that is due: its result now (it grew too old, its
        connection went), or send it again with today's credentials, after the same dedup
        check as a consumed event: one whose `event_id` has a result already is only
        unparked. None: not now (its partition is not ours or not restored, the registry does
        not answer, or a copy of it is being processed)."""
        if parked.source.topic_partition not in self._owned or self._restore.is_restoring(
            parked.partition
        ):
            return None
        try:
            trigger = self._decode_trigger(parked.received.value)
        except SchemaUnavailableError as exc:
            log.warning("schema registry unavailable for a parked event: %s", exc)
            return None
        except DecodeError as exc:  # it was decoded once
            return _undecodable(
                parked.source,
                f"parked event: {exc}"[:200],
                parked.received,
                self._clock_ms(),
                parked,
            )
        prior = self._dedup.seen(trigger.event_id)
        if prior is DedupStatus.IN_PROGRESS:
            return None
        if prior is not None and prior is not DedupStatus.PARKED:
            log.info(
                "parked event resolved already partition=%d event_id=%s status=%s",
                parked.partition,
                parked.event_id,
                prior,
            )
            return Unpark(parked)
        self._dedup.begin(trigger.event_id)
        verdict = self._decide(
            parked.source, self._enrich(trigger), parked.received, self._clock_ms(), parked
        )
        if isinstance(verdict, Resolved):
            letter = verdict.dead_letter
            if verdict.result.reason is Reason.EVENT_TOO_OLD:
                letter = parked.received  # it waited for Meta too long: an operator looks
            result = replace(verdict.result, attempts=parked.attempts)
            return Resolved(result, letter, parked)
        return verdict

    def _decode(self, msg: Message) -> Trigger | CapiConsumerError | None:
        """The message's trigger, or why it has none (None: not a record but an error event)."""
        if msg.error() is not None:
            return None
        try:
            return self._decode_trigger(msg.value())
        except (SchemaUnavailableError, DecodeError) as exc:
            return exc

    def remember_restricted(self, asset_id: str) -> None:
        """Meta answered that this asset is in a messaging-restrictive region."""
        self._restricted_assets.add(asset_id)

    def _decide(
        self,
        source: SourceRef,
        trigger: Trigger,
        received: RawMessage,
        now_ms: int,
        parked: ParkedEvent | None = None,
    ) -> Resolved | Send:
        connection = self._tables.connections.get(trigger.connection_id)
        try:
            decision = decide(trigger, connection, now_ms, self._rules, self._restricted_assets)
        except Exception as exc:  # an unforeseen rule break must not stop the partition
            log.exception(
                "rule evaluation failed topic=%s partition=%d offset=%d event_id=%s",
                source.topic,
                source.partition,
                source.offset,
                trigger.event_id,
            )
            detail = f"unexpected error evaluating the event: {type(exc).__name__}"
            decision = Refusal.fail(Reason.INVALID_EVENT, detail, dead_letter=True)
        if isinstance(decision, Refusal):
            return _refused(decision, source, trigger, received, now_ms)
        assert connection is not None  # decide() approves only with a connection
        for dropped in decision.dropped:
            self._metrics.tally(self._metrics.fields_dropped, dropped.key, dropped.reason)
        try:
            credentials = self._credentials.for_connection(connection)
        except MissingCredentialsError as exc:
            refusal = Refusal.fail(Reason.MISSING_CREDENTIALS, str(exc))
            return _refused(refusal, source, trigger, received, self._clock_ms())
        key = BatchKey._make((trigger.dataset_id, credentials, trigger.test_event_code))
        return Send(OutgoingEvent(source, trigger, decision, received, parked), key)

    def _prefetch(self, triggers: list[Trigger]) -> None:
        """The batch's contacts and referrals, looked up in one query per table."""
        self._tables.contacts.prefetch(t.contact_id for t in triggers)
        self._tables.referrals.prefetch(referral_key(t) for t in triggers if wants_referral(t))

    def _enrich(self, trigger: Trigger) -> Trigger:
        contact = self._tables.contacts.get(trigger.contact_id)
        referral = None
        looks_up_referral = wants_referral(trigger)
        if looks_up_referral:
            referral = self._tables.referrals.get(referral_key(trigger))
        result = enrich(trigger, contact, referral, self._window_ms)
        m = self._metrics
        m.tally(m.enrichment, "contacts", _lookup(contact, result.contact_used))
        if looks_up_referral:
            m.tally(m.enrichment, "referrals", _lookup(referral, result.referral_used))
        return result.trigger


def _consumer_error(error: KafkaError) -> None:
    """An error event of the consumer: stop on a fatal one, log the others (not the end of a
    partition)."""
    if error.fatal():
        if error.code() in FENCED:  # a static group member: another one took this instance id
            raise FencedError(
                f"consumer fenced: another instance joined the group with this CAPI_INSTANCE_ID "
                f"({error})"
            )
        raise FatalError(f"consumer fatal error: {error}")
    if error.code() != PARTITION_EOF:
        log.warning("consumer error: %s", error)


def _undecodable(
    source: SourceRef,
    detail: str,
    received: RawMessage,
    now_ms: int,
    parked: ParkedEvent | None = None,
) -> Resolved:
    result = ConversionResult(source, ResultStatus.FAILED, now_ms, Reason.UNDECODABLE, detail)
    return Resolved(result, received, parked)


def _refused(
    refusal: Refusal, source: SourceRef, trigger: Trigger, received: RawMessage, now_ms: int
) -> Resolved:
    """The refused event's result, with a dead letter of its received bytes when it gets one."""
    letter = received if refusal.dead_letter else None
    return Resolved(refusal.result(source, trigger, now_ms), letter)


def _lookup(record: object, used: bool) -> str:
    if record is None:
        return "miss"
    return "hit" if used else "unused"


def _is_replay(msg: Message) -> bool:
    headers = msg.headers() or []
    items = headers.items() if isinstance(headers, dict) else headers
    return any(name == REPLAY_HEADER for name, _ in items)


def _source(msg: Message) -> SourceRef:
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise FatalError("consumer returned a message without topic, partition or offset")
    return SourceRef._make((topic, partition, offset))  # per message: see `SourceRef`
