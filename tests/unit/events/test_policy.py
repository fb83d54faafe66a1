import pytest

from consumer.events.normalize import sha256_hex
from consumer.events.policy import Approved, Refusal, Rules, decide
from consumer.events.records import MetaConnection, Trigger
from consumer.settings import DEFAULT_RESTRICTED_COUNTRIES
from tests.factories import NOW_MS, connection_record, customer_info, trigger_record

RULES = Rules(restricted_countries=DEFAULT_RESTRICTED_COUNTRIES)
CONNECTION = MetaConnection.from_avro(connection_record())


def _decide(connection=CONNECTION, restricted=(), **overrides):
    return decide(
        Trigger.from_avro(trigger_record(**overrides)), connection, NOW_MS, RULES, restricted
    )


MESSENGER = {
    "channel": "MESSENGER",
    "channel_account_id": "page-1",
    "channel_user_id": "psid-1",
    "selected_whatsapp_business_account_id": None,
    "selected_page_id": "page-1",
}
INSTAGRAM = {
    "channel": "INSTAGRAM",
    "channel_account_id": "ig-1",
    "channel_user_id": "igsid-1",
    "selected_whatsapp_business_account_id": None,
    "selected_instagram_account_id": "ig-1",
}


@pytest.mark.parametrize(
    ("overrides", "skipped", "reason"),
    [
        ({"event_id": " "}, False, "INVALID_EVENT"),
        ({"connection_id": "conn-unknown"}, False, "UNKNOWN_CONNECTION"),
        ({"selected_whatsapp_business_account_id": None}, True, "CHANNEL_NOT_SELECTED"),
        ({"selected_whatsapp_business_account_id": "waba-other"}, True, "CHANNEL_NOT_SELECTED"),
        ({**MESSENGER, "selected_page_id": None}, True, "CHANNEL_NOT_SELECTED"),
        (
            {**MESSENGER, "channel_account_id": "page-de", "selected_page_id": "page-de"},
            True,
            "RESTRICTED_REGION",
        ),
        (
            {**INSTAGRAM, "channel_account_id": "ig-jp", "selected_instagram_account_id": "ig-jp"},
            True,
            "RESTRICTED_REGION",
        ),
        (
            {
                "channel_account_id": "waba-unknown",
                "selected_whatsapp_business_account_id": "waba-unknown",
            },
            False,
            "ASSET_NOT_LINKED",
        ),
        ({**MESSENGER, "dataset_id": "ds-2"}, False, "ASSET_NOT_LINKED"),
        ({"dataset_id": "ds-unknown"}, False, "ASSET_NOT_LINKED"),
        ({"occurred_at": NOW_MS - 8 * 86_400_000}, False, "EVENT_TOO_OLD"),
        ({"occurred_at": NOW_MS + 3_600_000}, False, "INVALID_EVENT"),
        ({"event_type": "PURCHASE"}, False, "INVALID_EVENT"),
        ({"event_type": "PURCHASE", "currency": "USD"}, False, "INVALID_EVENT"),
        ({"event_type": "PURCHASE", "currency": "XYZ", "value": "1"}, False, "INVALID_EVENT"),
        ({"event_type": "PURCHASE", "currency": "USD", "value": "-1"}, False, "INVALID_EVENT"),
        ({"event_type": "PURCHASE", "currency": "USD", "value": "NaN"}, False, "INVALID_EVENT"),
        ({"event_type": "PURCHASE", "currency": "USD", "value": "1e999"}, False, "INVALID_EVENT"),
        ({"event_type": "PURCHASE", "currency": "USD", "value": "ten"}, False, "INVALID_EVENT"),
        ({"ctwa_clid": None}, True, "NOT_AD_ATTRIBUTED"),
        ({**MESSENGER, "channel_user_id": None}, False, "INVALID_EVENT"),
        ({**INSTAGRAM, "channel_user_id": None}, False, "INVALID_EVENT"),
        ({"customer_info": customer_info()}, True, "NO_CUSTOMER_INFORMATION"),
        ({"customer_info": customer_info(email=" ", phone="n/a")}, True, "NO_CUSTOMER_INFORMATION"),
    ],
)
def test_refusals(overrides, skipped, reason):
    decision = _decide(**overrides)
    assert isinstance(decision, Refusal)
    assert (decision.skipped, decision.reason) == (skipped, reason)


@pytest.mark.parametrize(
    ("overrides", "dead_letter"),
    [
        # a wrong clock, the consumer's or the producer's: valid once replayed after the fix
        ({"occurred_at": NOW_MS + 3_600_000}, True),
        ({"connection_id": "conn-unknown"}, True),
        ({"dataset_id": "ds-unknown"}, True),
        # the event itself is wrong, or by design: a replay would end the same
        ({"event_type": "PURCHASE"}, False),
        ({**MESSENGER, "channel_user_id": None}, False),
        ({"occurred_at": NOW_MS - 8 * 86_400_000}, False),
        ({"ctwa_clid": None}, False),
    ],
)
def test_refusals_an_operator_can_replay_are_dead_lettered(overrides, dead_letter):
    decision = _decide(**overrides)
    assert isinstance(decision, Refusal)
    assert decision.dead_letter is dead_letter


@pytest.mark.parametrize(
    ("ahead_s", "refused"),
    [(-60, False), (0, False), (300, False), (301, True), (3_600, True), (86_400, True)],
)
def test_an_event_ahead_of_the_clock_by_more_than_the_allowed_skew_fails(ahead_s, refused):
    decision = _decide(occurred_at=NOW_MS + ahead_s * 1000)
    if not refused:
        assert isinstance(decision, Approved)
        return
    assert isinstance(decision, Refusal)
    assert (decision.status, decision.reason, decision.dead_letter) == (
        "FAILED",
        "INVALID_EVENT",
        True,
    )
    assert decision.detail == (
        f"clock skew: occurred_at is {ahead_s} s ahead of the consumer's clock (at most 300 s "
        "allowed); replay the dead letter once the clock is right"
    )


def test_disconnected_connection_is_skipped():
    conn = MetaConnection.from_avro(connection_record(status="DISCONNECTED"))
    decision = _decide(connection=conn)
    assert isinstance(decision, Refusal)
    assert (decision.skipped, decision.reason) == (True, "CONNECTION_DISCONNECTED")


def test_asset_remembered_as_restricted_is_skipped_even_in_an_open_country():
    decision = _decide(restricted={"page-1"}, **MESSENGER)
    assert isinstance(decision, Refusal)
    assert decision.reason == "RESTRICTED_REGION"


def test_whatsapp_in_a_restricted_country_is_not_region_restricted():
    decision = _decide(
        channel_account_id="waba-fr", selected_whatsapp_business_account_id="waba-fr"
    )
    assert isinstance(decision, Approved)


def test_unlinked_dataset_detail_tells_the_user_what_to_do():
    decision = _decide(**{**MESSENGER, "dataset_id": "ds-2"})
    assert isinstance(decision, Refusal)
    assert "link the dataset" in decision.detail
    assert "Events Manager" in decision.detail


def test_whatsapp_event_is_exactly_what_meta_specifies():
    decision = _decide(event_type="PURCHASE", currency="usd", value="19.90")
    assert isinstance(decision, Approved)
    assert decision.event == {
        "event_name": "Purchase",
        "event_time": (NOW_MS - 60_000) // 1000,
        "event_id": "evt-1",
        "action_source": "business_messaging",
        "messaging_channel": "whatsapp",
        "user_data": {
            "em": sha256_hex("john_smith@gmail.com"),
            "ph": sha256_hex("16505551212"),
            "whatsapp_business_account_id": "waba-1",
            "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
        },
        "custom_data": {"currency": "USD", "value": 19.9},
    }
    assert decision.user_data_keys == ("em", "ph", "whatsapp_business_account_id", "ctwa_clid")


def test_messenger_event_user_data():
    decision = _decide(**MESSENGER)
    assert isinstance(decision, Approved)
    assert decision.event["messaging_channel"] == "messenger"
    assert decision.event["event_name"] == "LeadSubmitted"
    ud = decision.event["user_data"]
    assert (ud["page_id"], ud["page_scoped_user_id"]) == ("page-1", "psid-1")
    assert "custom_data" not in decision.event


def test_instagram_event_user_data():
    decision = _decide(**INSTAGRAM)
    assert isinstance(decision, Approved)
    assert decision.event["messaging_channel"] == "instagram"
    ud = decision.event["user_data"]
    assert (ud["ig_account_id"], ud["ig_sid"]) == ("ig-1", "igsid-1")


def test_details_never_carry_customer_information():
    decision = _decide(customer_info=customer_info(email="bad@@", phone="secret-phone"))
    assert isinstance(decision, Refusal)
    assert "bad@@" not in decision.detail
    assert "secret-phone" not in decision.detail


def test_every_event_type_maps_to_an_allowed_meta_event_name():
    from consumer.events.policy import BUSINESS_MESSAGING_EVENTS
    from consumer.events.records import EventType

    names = {t.event_name for t in EventType}
    assert names == BUSINESS_MESSAGING_EVENTS
    assert EventType.PURCHASE.event_name == "Purchase"
    assert EventType.LEAD_SUBMITTED.event_name == "LeadSubmitted"
    assert EventType.ORDER_CANCELED.event_name == "OrderCanceled"
