import pytest

from consumer.events.policy import Approved
from consumer.events.records import Trigger
from consumer.events.results import RawMessage, SourceRef
from consumer.meta.batching import Batcher, BatchKey, OutgoingEvent
from consumer.meta.client import Credentials
from consumer.settings import Secret
from tests.factories import trigger_record

TRIGGER = Trigger.from_avro(trigger_record())
CREDS = Credentials(Secret("t"))


def _item(offset):
    return OutgoingEvent(
        SourceRef("t", 0, offset),
        TRIGGER,
        Approved({}, "LeadSubmitted", ()),
        RawMessage(None, None),
    )


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_full_batch_is_returned_by_add():
    batcher = Batcher(3, 10.0, Clock())
    key = BatchKey("ds-1", CREDS, None)
    assert batcher.add(key, _item(0)) is None
    assert batcher.add(key, _item(1)) is None
    full = batcher.add(key, _item(2))
    assert full is not None
    assert [i.source.offset for i in full.items] == [0, 1, 2]
    assert len(batcher) == 0


def test_test_events_and_other_datasets_never_share_a_batch():
    batcher = Batcher(10, 10.0, Clock())
    batcher.add(BatchKey("ds-1", CREDS, None), _item(0))
    batcher.add(BatchKey("ds-1", CREDS, "TEST1"), _item(1))
    batcher.add(BatchKey("ds-1", CREDS, "TEST2"), _item(2))
    batcher.add(BatchKey("ds-2", CREDS, None), _item(3))
    batcher.add(BatchKey("ds-1", Credentials(Secret("other")), None), _item(4))
    batches = batcher.flush()
    assert sorted(len(b) for b in batches) == [1, 1, 1, 1, 1]


def test_linger_releases_a_partial_batch():
    clock = Clock()
    batcher = Batcher(10, 0.5, clock)
    key = BatchKey("ds-1", CREDS, None)
    batcher.add(key, _item(0))
    assert batcher.due() == []
    assert batcher.next_due_in() == pytest.approx(0.5)
    clock.now = 0.6
    due = batcher.due()
    assert len(due) == 1
    assert batcher.next_due_in() is None


def test_drop_removes_the_events_of_given_partitions():
    batcher = Batcher(10, 1.0, Clock())
    key = BatchKey("ds-1", CREDS, None)
    batcher.add(key, _item(0))
    batcher.add(
        key,
        OutgoingEvent(
            SourceRef("t", 1, 5), TRIGGER, Approved({}, "LeadSubmitted", ()), RawMessage(None, None)
        ),
    )
    assert [i.source.offset for i in batcher.drop({("t", 0)})] == [0]
    assert len(batcher) == 1
    assert [i.source.partition for b in batcher.flush() for i in b.items] == [1]


def test_max_size_over_meta_limit_is_refused():
    with pytest.raises(ValueError, match="1000"):
        Batcher(1001, 1.0)


def test_due_with_a_limit_gives_the_oldest_batches_first():
    clock = Clock()
    batcher = Batcher(10, 0.5, clock)
    for i, dataset in enumerate(["ds-b", "ds-a", "ds-c"]):
        clock.now = i * 0.1
        batcher.add(BatchKey(dataset, CREDS, None), _item(i))
    clock.now = 1.0
    assert [b.key.dataset_id for b in batcher.due(limit=2)] == ["ds-b", "ds-a"]
    assert [b.key.dataset_id for b in batcher.due()] == ["ds-c"]
