"""Triage: one message in, one verdict out, from local state alone (no broker)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from consumer.errors import FatalError
from consumer.events.parking import ParkedEvent
from consumer.events.policy import Rules
from consumer.events.records import AdReferral, Channel, MetaConnection
from consumer.events.results import REPLAY_HEADER, DedupEntry, DedupStatus, RawMessage, SourceRef
from consumer.meta.credentials import CredentialStore
from consumer.service.triage import AlreadyResolved, Recover, Resolved, Rewind, Send, Triage, Unpark
from consumer.settings import DEFAULT_RESTRICTED_COUNTRIES
from consumer.store.dedup import Dedup
from consumer.store.outbox import Outbox
from consumer.store.parked import ParkedTable, encode_parked, parked_row
from consumer.store.sqlite import StateStore
from tests.factories import NOW_MS, connection_record, trigger_record
from tests.unit.service.fakes import CODEC, IN, FakeRestore, message, metrics, trigger_bytes


class _Table:
    def __init__(self, rows: dict[str, Any]) -> None:
        self.rows = rows
        self.prefetched: list[list[str]] = []

    def get(self, key: str) -> Any:
        return self.rows.get(key)

    def prefetch(self, keys: Iterable[str]) -> None:
        self.prefetched.append(sorted(keys))


class _Tables:
    def __init__(self) -> None:
        self.connections = _Table({"conn-1": MetaConnection.from_avro(connection_record())})
        self.contacts = _Table({})
        self.referrals = _Table({})


class World:
    def __init__(self, tmp_path: Path) -> None:
        store = StateStore(tmp_path / "state").open()
        self.dedup = Dedup(store, "results", clock_ms=lambda: NOW_MS)
        self.dedup.create_table()
        self.parked = ParkedTable(store, "retry", clock_ms=lambda: NOW_MS)
        self.parked.create_table()
        self.outbox = Outbox(store)
        self.outbox.open()
        self.restore = FakeRestore()
        self.tables = _Tables()
        self.metrics = metrics()
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "token-1").write_text("tok")
        self.triage = Triage(
            codec=CODEC,
            dedup=self.dedup,
            parked=self.parked,
            restore=self.restore,
            outbox=self.outbox,
            tables=self.tables,
            credentials=CredentialStore(creds),
            rules=Rules(restricted_countries=DEFAULT_RESTRICTED_COUNTRIES),
            owned={(IN, 0), (IN, 1)},
            metrics=self.metrics,
            clock_ms=lambda: NOW_MS,
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


PAGE = {
    "channel": "MESSENGER",
    "channel_account_id": "page-1",
    "channel_user_id": "psid-1",
    "selected_whatsapp_business_account_id": None,
    "selected_page_id": "page-1",
}


# (case, trigger overrides, verdict type, status, reason, dead-lettered)
TOO_OLD = NOW_MS - 8 * 86_400_000
DECISIONS = [
    ("approved", {}, Send, None, None, False),
    (
        "unknown connection",
        {"connection_id": "conn-9"},
        Resolved,
        "FAILED",
        "UNKNOWN_CONNECTION",
        True,
    ),
    (
        "restricted page",
        {**PAGE, "channel_account_id": "page-de", "selected_page_id": "page-de"},
        Resolved,
        "SKIPPED",
        "RESTRICTED_REGION",
        False,
    ),
    (
        "not selected",
        {"selected_whatsapp_business_account_id": None},
        Resolved,
        "SKIPPED",
        "CHANNEL_NOT_SELECTED",
        False,
    ),
    ("too old", {"occurred_at": TOO_OLD}, Resolved, "FAILED", "EVENT_TOO_OLD", False),
    (
        "clock skew",
        {"occurred_at": NOW_MS + 3_600_000},
        Resolved,
        "FAILED",
        "INVALID_EVENT",
        True,
    ),
    (
        "purchase without value",
        {"event_type": "PURCHASE"},
        Resolved,
        "FAILED",
        "INVALID_EVENT",
        False,
    ),
    (
        "no credentials",
        {"connection_id": "conn-2"},
        Resolved,
        "FAILED",
        "MISSING_CREDENTIALS",
        True,
    ),
]


@pytest.mark.parametrize(
    ("overrides", "kind", "status", "reason", "dead_letter"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_a_decodable_message_is_decided_from_the_tables(
    world, overrides, kind, status, reason, dead_letter
):
    world.tables.connections.rows["conn-2"] = MetaConnection.from_avro(
        connection_record(connection_id="conn-2", credential_ref="missing")
    )
    value = trigger_bytes(trigger_record(**overrides))
    [verdict] = world.triage.batch([message(7, value)])
    assert type(verdict) is kind
    if isinstance(verdict, Resolved):
        assert (verdict.result.status, verdict.result.reason) == (status, reason)
        assert verdict.result.source.offset == 7
        assert (verdict.dead_letter is not None) == dead_letter
        if verdict.dead_letter is not None:
            assert verdict.dead_letter.value == value  # the received bytes, unchanged
    else:
        assert verdict.item.trigger.event_id == "evt-1"
        assert verdict.key.dataset_id == "ds-1"
        assert verdict.item.received.value == value
        assert world.dedup.seen("evt-1") == "IN_PROGRESS"


def test_clock_skew_is_dead_lettered_with_the_skew_and_measured_for_every_trigger(world):
    ahead = trigger_bytes(trigger_record(event_id="evt-ahead", occurred_at=NOW_MS + 420_000))
    drifting = trigger_bytes(trigger_record(event_id="evt-drift", occurred_at=NOW_MS + 90_000))
    usual = trigger_bytes(trigger_record(event_id="evt-usual"))  # a minute old
    skewed, within, sent = world.triage.batch(
        [message(1, ahead), message(2, drifting), message(3, usual)]
    )
    assert isinstance(skewed, Resolved)
    assert skewed.dead_letter is not None
    assert skewed.dead_letter.value == ahead
    error = dict(skewed.result.dead_letter_headers())["capi.error"]
    assert error == (
        b"INVALID_EVENT: clock skew: occurred_at is 420 s ahead of the consumer's clock (at most "
        b"300 s allowed); replay the dead letter once the clock is right"
    )
    assert (type(within), type(sent)) == (Send, Send)
    # every trigger is measured, the refused one and the two within the allowed skew
    world.metrics.flush()  # as the loop does at the end of each turn
    sample = world.metrics.registry.get_sample_value
    name = "capi_event_ahead_of_clock_seconds"
    buckets = {le: sample(f"{name}_bucket", {"le": le}) for le in ("0.0", "60.0", "120.0", "600.0")}
    assert buckets == {"0.0": 1, "60.0": 1, "120.0": 2, "600.0": 3}
    assert (sample(f"{name}_count"), sample(f"{name}_sum")) == (3, 510)
    # a batch with no trigger ahead (the usual one) is counted at 0 all at once
    world.triage.batch(
        [message(4 + n, trigger_bytes(trigger_record(event_id=f"e{n}"))) for n in (0, 1)]
    )
    world.metrics.flush()
    assert sample(f"{name}_bucket", {"le": "0.0"}) == 3
    assert (sample(f"{name}_count"), sample(f"{name}_sum")) == (5, 510)


def test_local_state_answers_before_decoding(world):
    world.restore.restoring_partitions = {1}
    world.restore.resolved = {(0, 3)}
    world.outbox.load(IN, 0, 0)
    world.outbox.add(IN, 0, 4, [], DedupEntry("evt-1", DedupStatus.SENT))
    world.outbox.flush()
    world.outbox.load(IN, 0, 0)
    value = trigger_bytes(trigger_record())
    verdicts = world.triage.batch(
        [message(3, value), message(4, value), message(9, value, partition=1)]
    )
    assert [type(v) for v in verdicts] == [AlreadyResolved, Recover, Rewind]
    assert [v.source.offset for v in verdicts] == [3, 4, 9]
    # the recovered one is in progress until its kept answer is published; nothing else began
    assert world.dedup.seen("evt-1") == "IN_PROGRESS"


def test_after_a_rewind_the_partition_gets_no_more_verdicts_in_the_batch(world):
    world.restore.restoring_partitions = {0}
    value = trigger_bytes(trigger_record())
    verdicts = world.triage.batch(
        [message(1, value), message(2, value), message(5, value, partition=1)]
    )
    assert [(type(v), v.source.partition if isinstance(v, Rewind) else 1) for v in verdicts] == [
        (Rewind, 0),
        (Send, 1),
    ]


def test_undecodable_bytes_fail_with_a_dead_letter(world):
    [verdict] = world.triage.batch([message(0, b"\x00not avro")])
    assert isinstance(verdict, Resolved)
    assert (verdict.result.status, verdict.result.reason) == ("FAILED", "UNDECODABLE")
    assert verdict.result.event_id is None
    assert verdict.dead_letter is not None
    assert verdict.dead_letter.value == b"\x00not avro"


def test_a_second_copy_is_a_duplicate_unless_a_replay_of_a_failure(world):
    value = trigger_bytes(trigger_record())
    first, second = world.triage.batch([message(0, value), message(1, value)])
    assert isinstance(first, Send)
    assert (second.result.status, second.result.reason) == ("SKIPPED", "DUPLICATE")
    assert second.result.dedup_entry is None  # a duplicate does not overwrite the first's entry
    world.dedup.record(DedupEntry("evt-1", DedupStatus.FAILED), 0)
    replay = message(2, value, headers=[(REPLAY_HEADER, b"1")])
    plain = message(3, value)
    assert isinstance(world.triage.batch([replay])[0], Send)
    world.dedup.record(DedupEntry("evt-1", DedupStatus.FAILED), 0)
    assert world.triage.batch([plain])[0].result.reason == "DUPLICATE"


def test_a_batch_looks_its_contacts_and_referrals_up_before_its_events(world):
    """One query per table for the batch: every trigger's contact; the referral only of a
    WhatsApp trigger without the ad's click id, as the enrichment asks for it."""
    values = [
        trigger_record(event_id="a", contact_id="c-1", ctwa_clid=None),
        trigger_record(event_id="b", contact_id="c-2"),  # has its click id
        trigger_record(event_id="c", contact_id="c-3", channel="MESSENGER", ctwa_clid=None),
    ]
    world.triage.batch([message(i, trigger_bytes(v)) for i, v in enumerate(values)])
    assert world.tables.contacts.prefetched == [["c-1", "c-2", "c-3"]]
    assert world.tables.referrals.prefetched == [["c-1:WHATSAPP"]]


def test_a_whatsapp_trigger_with_a_blank_click_id_gets_the_referral_s(world):
    """Blank is absent, for the lookup as for the enrichment: the click id comes from the
    contact's referral."""
    world.tables.referrals.rows["c-1:WHATSAPP"] = AdReferral(
        "c-1", Channel.WHATSAPP, "waba-1", "clid-from-referral", None, None, NOW_MS - 120_000
    )
    value = trigger_bytes(trigger_record(ctwa_clid="  "))
    [verdict] = world.triage.batch([message(0, value)])
    assert isinstance(verdict, Send)
    assert verdict.item.trigger.ctwa_clid == "clid-from-referral"
    assert world.tables.referrals.prefetched == [["c-1:WHATSAPP"]]


def test_a_fatal_consumer_error_stops_the_service_and_eof_is_ignored(world):
    eof = message(0, None)
    eof.set_error(KafkaError(KafkaError._PARTITION_EOF, "end"))
    assert world.triage.batch([eof]) == []
    fatal = message(0, None)
    fatal.set_error(KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    with pytest.raises(FatalError):
        world.triage.batch([fatal])


def test_a_copy_after_a_message_recovered_from_the_outbox_is_a_duplicate(world):
    world.outbox.add(IN, 0, 4, [], DedupEntry("evt-1", DedupStatus.SENT))
    world.outbox.flush()
    world.outbox.load(IN, 0, 0)
    value = trigger_bytes(trigger_record())
    recovered, copy = world.triage.batch([message(4, value), message(5, value)])
    assert isinstance(recovered, Recover)
    assert (copy.result.status, copy.result.reason) == ("SKIPPED", "DUPLICATE")


def test_a_consumer_fenced_as_a_static_member_stops_like_a_fenced_producer(world):
    from consumer.errors import FencedError

    fenced = message(0, None)
    fenced.set_error(KafkaError(KafkaError._FENCED, "fenced by a newer member", fatal=True))
    with pytest.raises(FencedError, match="CAPI_INSTANCE_ID"):
        world.triage.batch([fenced])


def test_a_message_of_a_partition_let_go_gets_no_verdict(world):
    value = trigger_bytes(trigger_record())
    assert world.triage.batch([message(0, value, partition=2)]) == []
    assert world.dedup.seen("evt-1") is None  # nothing began for it


def _parked(value: bytes, partition: int = 0, attempts: int = 3) -> ParkedEvent:
    return ParkedEvent(
        "evt-1",
        "ds-1",
        SourceRef(IN, partition, 7),
        RawMessage(b"c-1", value),
        attempts=attempts,
        parkings=1,
        first_parked_at=NOW_MS - 60_000,
        parked_at=NOW_MS - 60_000,
        due_at=NOW_MS,
    )


def test_a_copy_of_an_event_parked_by_the_previous_owner_is_a_duplicate(world):
    value = trigger_bytes(trigger_record())
    parked = _parked(value)
    world.parked.apply([parked_row(parked, encode_parked(parked))], [])
    [copy] = world.triage.batch([message(9, value)])
    assert (copy.result.status, copy.result.reason) == ("SKIPPED", "DUPLICATE")
    assert "PARKED" in copy.result.detail


def test_a_due_parked_event_is_decided_again_with_todays_tables(world):
    value = trigger_bytes(trigger_record())
    verdict = world.triage.parked(_parked(value))
    assert isinstance(verdict, Send)
    assert verdict.item.parked == _parked(value)
    assert verdict.item.source == SourceRef(IN, 0, 7)  # its input's: where its result goes
    assert verdict.key.credentials.access_token.reveal() == "tok"  # looked up now, not kept
    assert world.dedup.seen("evt-1") == "IN_PROGRESS"  # a copy arriving now is a duplicate
    assert world.triage.parked(_parked(value)) is None  # not twice at once
    world.dedup.abandon("evt-1")  # its partition moved before Meta answered
    world.tables.connections.rows.clear()  # the connection went while it was parked
    gone = world.triage.parked(_parked(value))
    assert isinstance(gone, Resolved)
    assert (gone.result.reason, gone.result.attempts, gone.parked) == (
        "UNKNOWN_CONNECTION",
        3,
        _parked(value),
    )


def test_a_parked_event_that_grew_too_old_fails_with_a_dead_letter(world):
    value = trigger_bytes(trigger_record(occurred_at=TOO_OLD))
    verdict = world.triage.parked(_parked(value, attempts=12))
    assert isinstance(verdict, Resolved)
    assert (verdict.result.status, verdict.result.reason) == ("FAILED", "EVENT_TOO_OLD")
    assert verdict.result.attempts == 12
    assert verdict.dead_letter == RawMessage(b"c-1", value)


def test_a_parked_event_waits_while_its_partition_is_restored_or_not_ours(world):
    value = trigger_bytes(trigger_record())
    world.restore.restoring_partitions = {0}
    assert world.triage.parked(_parked(value)) is None
    assert world.triage.parked(_parked(value, partition=5)) is None


def test_a_parked_event_with_a_result_already_is_unparked_not_sent(world):
    """Its partition's other owner sent it while it was away from here: the results topic
    says so (restored into the dedup table), whatever the local parked table still holds."""
    value = trigger_bytes(trigger_record())
    world.dedup.store([("evt-1", "SENT", NOW_MS - 1_000)], {})
    verdict = world.triage.parked(_parked(value))
    assert verdict == Unpark(_parked(value))
    assert world.dedup.seen("evt-1") == "SENT"  # nothing began for it
