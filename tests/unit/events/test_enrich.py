import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.events.enrich import enrich, referral_key
from consumer.events.records import AdReferral, Channel, Contact, CustomerInfo, Identity, Trigger
from tests.factories import NOW_MS, customer_info, trigger_record

WINDOW = 7 * 86_400_000
OCCURRED = NOW_MS - 60_000
CONTACT = Contact(
    contact_id="c-1",
    workspace_id="ws-1",
    customer_info=CustomerInfo(
        email="contact@example.com", phone="+33 6 12 34 56 78", first_name="Ann", country="FR"
    ),
    identities=(
        Identity(Channel.MESSENGER, "page-1", "psid-from-contact"),
        Identity(Channel.INSTAGRAM, "ig-1", "igsid-from-contact"),
        Identity(Channel.MESSENGER, "page-2", "psid-other-page"),
    ),
)


def _referral(**overrides: Any) -> AdReferral:
    values: dict[str, Any] = dict(
        contact_id="c-1",
        channel=Channel.WHATSAPP,
        channel_account_id="waba-1",
        ctwa_clid="clid-from-referral",
        ad_id=None,
        source_url=None,
        referred_at=OCCURRED - 3_600_000,
    )
    values.update(overrides)
    return AdReferral(**values)


def _trigger(**overrides):
    return Trigger.from_avro(trigger_record(**overrides))


def test_step_values_win_and_blanks_are_filled_from_the_contact():
    trigger = _trigger(customer_info=customer_info(email="step@example.com", phone="  "))
    result = enrich(trigger, CONTACT, None, WINDOW)
    info = result.trigger.customer_info
    assert info.email == "step@example.com"
    assert info.phone == "+33 6 12 34 56 78"
    assert info.first_name == "Ann"
    assert info.country == "FR"
    assert result.contact_used


def test_nothing_to_fill_leaves_the_trigger_and_says_so():
    full = CustomerInfo(**{f: "x" for f in CustomerInfo.__slots__})
    trigger = _trigger(customer_info={f: "x" for f in CustomerInfo.__slots__})
    result = enrich(trigger, Contact("c-1", "ws-1", full), None, WINDOW)
    assert result.trigger is trigger
    assert not result.contact_used


@pytest.mark.parametrize(
    ("channel", "account", "expected"),
    [
        ("MESSENGER", "page-1", "psid-from-contact"),
        ("INSTAGRAM", "ig-1", "igsid-from-contact"),
        ("MESSENGER", "page-9", None),
    ],
)
def test_user_id_comes_from_the_identity_for_that_channel_and_account(channel, account, expected):
    trigger = _trigger(channel=channel, channel_account_id=account, channel_user_id=None)
    assert enrich(trigger, CONTACT, None, WINDOW).trigger.channel_user_id == expected


def test_the_messages_user_id_wins():
    trigger = _trigger(channel="MESSENGER", channel_account_id="page-1", channel_user_id="psid-msg")
    assert enrich(trigger, CONTACT, None, WINDOW).trigger.channel_user_id == "psid-msg"


@pytest.mark.parametrize(
    ("referral", "found"),
    [
        (_referral(), True),
        (_referral(referred_at=OCCURRED - WINDOW), True),  # the window's first millisecond
        (_referral(referred_at=OCCURRED - WINDOW - 1), False),  # just outside
        (_referral(referred_at=OCCURRED + 5 * 60_000), True),  # clock skew tolerated
        (_referral(referred_at=OCCURRED + 5 * 60_000 + 1), False),  # after the event
        (_referral(channel_account_id="waba-2"), False),  # another WABA
        (_referral(ctwa_clid=None), False),
        (_referral(ctwa_clid=" "), False),
        (_referral(contact_id="c-2"), False),
    ],
)
def test_referral_window_edges(referral, found):
    trigger = _trigger(ctwa_clid=None, occurred_at=OCCURRED)
    result = enrich(trigger, None, referral, WINDOW)
    assert result.referral_used is found
    assert result.trigger.ctwa_clid == ("clid-from-referral" if found else None)


def test_the_messages_click_id_wins_over_the_referral():
    trigger = _trigger(ctwa_clid="clid-from-message")
    result = enrich(trigger, None, _referral(), WINDOW)
    assert result.trigger.ctwa_clid == "clid-from-message"
    assert not result.referral_used


def test_referral_key():
    assert referral_key(_trigger(contact_id="c-17")) == "c-17:WHATSAPP"


values = st.none() | st.sampled_from(["", " ", "\t", "a", " b ", "c"])
infos = st.builds(CustomerInfo, *([values] * 11))


@settings(max_examples=300, deadline=None)
@given(infos, infos)
def test_a_merge_fills_each_blank_from_the_contact_and_nothing_else(step, contact):
    merged = step.merged_over(contact)
    expected = tuple(
        mine if mine is not None and mine.strip() else theirs
        for mine, theirs in zip(step.values(), contact.values(), strict=True)
    )
    assert merged.values() == expected
    if expected == step.values():
        assert merged is step  # nothing filled: the step's own record, not a copy


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["customer_info", "channel_user_id", "ctwa_clid", "event_id", "value"]),
        st.text(max_size=8),
    )
)
def test_a_replaced_trigger_is_what_dataclasses_replace_builds(changes):
    trigger = Trigger.from_avro(trigger_record())
    assert trigger.replaced(**changes) == dataclasses.replace(trigger, **changes)
