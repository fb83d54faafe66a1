"""Meta's answers collected on the main loop: each to the checkpoint, and an asset Meta refused
as restricted remembered by triage, whose next event on it is skipped without a request."""

from __future__ import annotations

from consumer.events.policy import Approved
from consumer.events.records import ResultStatus, Trigger
from consumer.events.results import RawMessage, Reason, SourceRef
from consumer.meta.batching import OutgoingEvent
from consumer.meta.dispatch import Outcome
from consumer.service.answers import Answers
from consumer.service.triage import Resolved, Send
from tests.factories import trigger_record
from tests.unit.service.fakes import IN, message, trigger_bytes
from tests.unit.service.test_triage import PAGE, World


class _Sender:
    def __init__(self, answers) -> None:
        self.answers = answers

    def step(self, backlog: bool = False):
        answers, self.answers = self.answers, []
        return answers

    def take_abandoned(self):
        return []


class _Checkpoint:
    def __init__(self) -> None:
        self.answered_items: list[str] = []

    def answered(self, item, outcome) -> None:
        self.answered_items.append(item.trigger.event_id)

    def abandon(self, items) -> None:
        assert items == []


def _pending(event_id: str, account: str) -> OutgoingEvent:
    record = trigger_record(event_id=event_id, channel_account_id=account)
    return OutgoingEvent(
        SourceRef(IN, 0, 1),
        Trigger.from_avro(record),
        Approved({"event_id": event_id}, "LeadSubmitted", ("em",)),
        RawMessage(None, None),
    )


def test_a_restricted_answer_is_remembered_and_the_next_event_on_that_asset_skipped(tmp_path):
    world = World(tmp_path)
    account = str(PAGE["channel_account_id"])  # a page in the US: sent, until Meta refuses it
    restricted = Outcome(ResultStatus.SKIPPED, Reason.RESTRICTED_REGION, "restrictive region")
    sent = Outcome(ResultStatus.SENT)
    checkpoint = _Checkpoint()
    sender = _Sender([(_pending("e1", account), restricted), (_pending("e2", "other"), sent)])
    answers = Answers(sender=sender, checkpoint=checkpoint, triage=world.triage)  # type: ignore[arg-type]
    before = world.triage.batch([message(4, trigger_bytes(trigger_record(event_id="e0", **PAGE)))])
    assert isinstance(before[0], Send)
    answers.collect()
    assert checkpoint.answered_items == ["e1", "e2"]
    value = trigger_bytes(trigger_record(event_id="e3", **PAGE))
    [verdict] = world.triage.batch([message(5, value)])
    assert isinstance(verdict, Resolved)
    assert (verdict.result.status, verdict.result.reason) == ("SKIPPED", "RESTRICTED_REGION")
