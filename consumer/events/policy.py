"""What may be sent: the rules of docs/contract.md and docs/meta-rules.md as one pure decision.

`decide(trigger, connection, now_ms, rules)` returns either a `Refusal` (SKIPPED by design, or
FAILED needing attention, with a reason code and a human-readable detail that never carries
customer information) or an `Approved` CAPI server event ready to batch.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import TYPE_CHECKING, Any

import pycountry

from consumer.events.normalize import Dropped, UserData, normalize_customer_info
from consumer.events.records import (
    AssetType,
    Channel,
    ConnectionStatus,
    EventType,
    MetaConnection,
    ResultStatus,
    Trigger,
)
from consumer.events.results import DEAD_LETTER_REASONS, ConversionResult, Reason, SourceRef

if TYPE_CHECKING:
    from consumer.settings import Settings

__all__ = [
    "BUSINESS_MESSAGING_EVENTS",
    "Approved",
    "Decision",
    "Refusal",
    "Rules",
    "decide",
    "is_currency",
    "seconds_ahead",
]

_ASSET_TYPE = {
    Channel.WHATSAPP: AssetType.WHATSAPP_BUSINESS_ACCOUNT,
    Channel.MESSENGER: AssetType.FACEBOOK_PAGE,
    Channel.INSTAGRAM: AssetType.INSTAGRAM_ACCOUNT,
}
_ASSET_LABEL = {
    Channel.WHATSAPP: "WhatsApp Business Account",
    Channel.MESSENGER: "Facebook Page",
    Channel.INSTAGRAM: "Instagram account",
}
# The event names Meta accepts for business messaging (docs/meta-rules.md); others are rejected.
BUSINESS_MESSAGING_EVENTS = frozenset(
    {
        "Purchase",
        "LeadSubmitted",
        "QualifiedLead",
        "InitiateCheckout",
        "AddToCart",
        "ViewContent",
        "OrderCreated",
        "OrderShipped",
        "OrderDelivered",
        "OrderCanceled",
        "OrderReturned",
        "CartAbandoned",
        "RatingProvided",
        "ReviewProvided",
    }
)
# Only Pages and Instagram accounts fall under the ePrivacy restriction.
_REGION_RESTRICTED_CHANNELS = frozenset({Channel.MESSENGER, Channel.INSTAGRAM})
# compared with for every event, kept in module globals: see `records.py` on enum members
_WHATSAPP, _MESSENGER = Channel.WHATSAPP, Channel.MESSENGER
_DISCONNECTED = ConnectionStatus.DISCONNECTED
_PURCHASE = EventType.PURCHASE


@dataclass(frozen=True, slots=True)
class Rules:
    """The configurable parts of the rules (from Settings)."""

    restricted_countries: frozenset[str]
    # Meta refuses an event older than 7 days; one more than 5 minutes ahead is a wrong clock
    max_event_age_s: int = 7 * 24 * 3600
    future_skew_s: int = 300
    default_phone_region: str | None = None
    # False only for `capi-consumer test-event`: a test may check a WhatsApp setup without an ad
    require_click_id: bool = True
    # how far back a contact's latest ad referral gives a click id (enrichment)
    attribution_window_s: int = 7 * 24 * 3600

    @classmethod
    def from_settings(cls, settings: Settings, *, require_click_id: bool = True) -> Rules:
        return cls(
            restricted_countries=settings.restricted_countries,
            default_phone_region=settings.default_phone_region,
            require_click_id=require_click_id,
            attribution_window_s=settings.attribution_window_s,
        )


@dataclass(slots=True)
class Refusal:
    """Why an event is not sent: SKIPPED by design (`skip`), or FAILED needing attention
    (`fail`); `dead_letter`: its received bytes go to the dead-letter topic, for an operator to
    replay once the cause is fixed."""

    status: ResultStatus
    reason: Reason
    detail: str
    dead_letter: bool = False

    @classmethod
    def skip(cls, reason: Reason, detail: str) -> Refusal:
        return cls(ResultStatus.SKIPPED, reason, detail)

    @classmethod
    def fail(cls, reason: Reason, detail: str, *, dead_letter: bool = False) -> Refusal:
        """FAILED, dead-lettered when its reason always is (`DEAD_LETTER_REASONS`) or when this
        failure is one a fix outside the event cures (`dead_letter`)."""
        return cls(
            ResultStatus.FAILED, reason, detail, dead_letter or reason in DEAD_LETTER_REASONS
        )

    @property
    def skipped(self) -> bool:
        return self.status is ResultStatus.SKIPPED

    def result(self, source: SourceRef, trigger: Trigger, processed_at: int) -> ConversionResult:
        return ConversionResult(
            source, self.status, processed_at, self.reason, self.detail, trigger
        )


@dataclass(slots=True)
class Approved:
    """A CAPI server event that passed every rule."""

    event: dict[str, Any]
    event_name: str
    user_data_keys: tuple[str, ...]
    dropped: tuple[Dropped, ...] = field(default=())


Decision = Refusal | Approved


def decide(
    trigger: Trigger,
    connection: MetaConnection | None,
    now_ms: int,
    rules: Rules,
    restricted_assets: Collection[str] = (),
) -> Decision:
    """Refuse what must not reach Meta, or build the server event."""
    if not trigger.event_id.strip():
        return Refusal.fail(Reason.INVALID_EVENT, "event_id is empty")
    event_name = trigger.event_type.event_name
    if event_name not in BUSINESS_MESSAGING_EVENTS:
        return Refusal.fail(Reason.INVALID_EVENT, f"{event_name} is not a business messaging event")
    refusal = _route_refusal(trigger, connection, rules, restricted_assets) or _time_refusal(
        trigger, now_ms, rules
    )
    if refusal is not None:
        return refusal
    custom_data = _custom_data(trigger)
    if isinstance(custom_data, Refusal):
        return custom_data
    channel_ids = _channel_ids(trigger, rules.require_click_id)
    if isinstance(channel_ids, Refusal):
        return channel_ids
    user_data: UserData = normalize_customer_info(
        trigger.customer_info, default_region=rules.default_phone_region
    )
    if not user_data.hashed:
        return Refusal.skip(
            Reason.NO_CUSTOMER_INFORMATION,
            "no customer information field is present after normalization",
        )
    combined = user_data.hashed  # this event's own dict: the channel's ids join it
    combined.update(channel_ids)
    event: dict[str, Any] = {
        "event_name": event_name,
        "event_time": trigger.occurred_at // 1000,
        "event_id": trigger.event_id,
        "action_source": "business_messaging",
        "messaging_channel": trigger.channel.messaging_channel,
        "user_data": combined,
    }
    if custom_data:
        event["custom_data"] = custom_data
    return Approved(
        event=event,
        event_name=event_name,
        user_data_keys=tuple(combined),
        dropped=tuple(user_data.dropped),
    )


def _route_refusal(
    trigger: Trigger,
    connection: MetaConnection | None,
    rules: Rules,
    restricted_assets: Collection[str],
) -> Refusal | None:
    """Why the event may not take its way (connection, account, region, dataset), if it may not."""
    channel = trigger.channel
    if connection is None or connection.connection_id != trigger.connection_id:
        return Refusal.fail(
            Reason.UNKNOWN_CONNECTION, f"connection {trigger.connection_id} is not known"
        )
    if connection.status is _DISCONNECTED:
        return Refusal.skip(
            Reason.CONNECTION_DISCONNECTED, f"connection {connection.connection_id} is disconnected"
        )
    if trigger.selected_account_id != trigger.channel_account_id:
        return Refusal.skip(
            Reason.CHANNEL_NOT_SELECTED,
            f"the step did not select the {_ASSET_LABEL[channel]} {trigger.channel_account_id}",
        )
    asset = connection.asset(trigger.channel_account_id)
    if asset is None or asset.asset_type is not _ASSET_TYPE[channel]:
        return Refusal.fail(
            Reason.ASSET_NOT_LINKED,
            f"{_label(trigger)} is not an asset of connection {connection.connection_id}",
        )
    if channel in _REGION_RESTRICTED_CHANNELS and (
        asset.registration_country.upper() in rules.restricted_countries
        or asset.asset_id in restricted_assets
    ):
        return Refusal.skip(
            Reason.RESTRICTED_REGION,
            f"{_label(trigger)} is registered in {asset.registration_country.upper()}, where "
            "the ePrivacy Directive rules out Conversions API for business messaging",
        )
    dataset = connection.dataset(trigger.dataset_id)
    if dataset is None or asset.asset_id not in dataset.linked_asset_ids:
        return Refusal.fail(
            Reason.ASSET_NOT_LINKED,
            f"dataset {trigger.dataset_id} is not linked to {_label(trigger)}: link the dataset "
            "to it in Meta Events Manager",
        )
    return None


def seconds_ahead(trigger: Trigger, now_ms: int) -> float:
    """How far the event's `occurred_at` is ahead of the clock that read `now_ms` (0 when it is
    not ahead): past `Rules.future_skew_s`, one of the two clocks is wrong."""
    return max(0.0, (trigger.occurred_at - now_ms) / 1000)


def _time_refusal(trigger: Trigger, now_ms: int, rules: Rules) -> Refusal | None:
    age_s = (now_ms - trigger.occurred_at) / 1000
    if age_s > rules.max_event_age_s:
        return Refusal.fail(
            Reason.EVENT_TOO_OLD,
            f"occurred {age_s / 86400:.1f} days ago; Meta refuses events older than "
            f"{rules.max_event_age_s / 86400:g} days",
        )
    ahead_s = seconds_ahead(trigger, now_ms)
    if ahead_s > rules.future_skew_s:
        # the consumer's clock is behind or the producer's ahead: valid once the clock is right
        return Refusal.fail(
            Reason.INVALID_EVENT,
            f"clock skew: occurred_at is {ahead_s:.0f} s ahead of the consumer's clock (at most "
            f"{rules.future_skew_s} s allowed); replay the dead letter once the clock is right",
            dead_letter=True,
        )
    return None


def _label(trigger: Trigger) -> str:
    return f"{_ASSET_LABEL[trigger.channel]} {trigger.channel_account_id}"


def _channel_ids(trigger: Trigger, require_click_id: bool) -> dict[str, str] | Refusal:
    user_id = (trigger.channel_user_id or "").strip()
    if trigger.channel is _WHATSAPP:
        ids = {"whatsapp_business_account_id": trigger.channel_account_id}
        clid = (trigger.ctwa_clid or "").strip()
        if clid:
            ids["ctwa_clid"] = clid
        elif require_click_id:
            return Refusal.skip(
                Reason.NOT_AD_ATTRIBUTED,
                "WhatsApp conversation without a click-to-WhatsApp ad click id",
            )
        return ids
    if trigger.channel is _MESSENGER:
        if not user_id:
            return Refusal.fail(
                Reason.INVALID_EVENT, "Messenger event without the page-scoped user id"
            )
        return {"page_id": trigger.channel_account_id, "page_scoped_user_id": user_id}
    if not user_id:
        return Refusal.fail(
            Reason.INVALID_EVENT, "Instagram event without the Instagram-scoped user id"
        )
    return {"ig_account_id": trigger.channel_account_id, "ig_sid": user_id}


def _custom_data(trigger: Trigger) -> dict[str, Any] | Refusal:
    currency = (trigger.currency or "").strip().upper()
    raw_value = (trigger.value or "").strip()
    if trigger.event_type is _PURCHASE and not (currency and raw_value):
        return Refusal.fail(Reason.INVALID_EVENT, "a Purchase needs a currency and a value")
    data: dict[str, Any] = {}
    if currency:
        if not is_currency(currency):
            return Refusal.fail(
                Reason.INVALID_EVENT, f"currency {currency[:8]!r} is not an ISO 4217 code"
            )
        data["currency"] = currency
    if raw_value:
        try:
            value = Decimal(raw_value)
        except InvalidOperation:
            return Refusal.fail(Reason.INVALID_EVENT, "value is not a decimal number")
        if not value.is_finite() or value < 0 or not math.isfinite(float(value)):
            return Refusal.fail(Reason.INVALID_EVENT, "value must be a finite, non-negative number")
        data["value"] = float(value)
    return data


@cache
def _currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)


def is_currency(code: str) -> bool:
    return code in _currencies()
