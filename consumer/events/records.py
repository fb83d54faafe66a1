"""Typed records of the contract (docs/contract.md), built from decoded Avro dicts."""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

__all__ = [
    "CUSTOMER_FIELDS",
    "TRIGGER_AVRO_TYPES",
    "AdReferral",
    "Asset",
    "AssetType",
    "Channel",
    "ConnectionStatus",
    "Contact",
    "CustomerInfo",
    "Dataset",
    "EventType",
    "Identity",
    "MetaConnection",
    "ResultStatus",
    "Trigger",
]


# Code run for every event compares with the members it needs kept in module globals
# (`_WHATSAPP = Channel.WHATSAPP`): on Python 3.11 a member read from its class goes through
# the hook of `EnumType.__getattr__`, about 95 ns against 13 for a global, and an event makes
# about ten such comparisons.


class Channel(enum.StrEnum):
    WHATSAPP = "WHATSAPP"
    MESSENGER = "MESSENGER"
    INSTAGRAM = "INSTAGRAM"

    @property
    def messaging_channel(self) -> str:
        """The value of CAPI's `messaging_channel` for this channel."""
        return str.lower(self)  # a StrEnum is its value (`.value` is a slow descriptor)


class EventType(enum.StrEnum):
    PURCHASE = "PURCHASE"
    LEAD_SUBMITTED = "LEAD_SUBMITTED"
    QUALIFIED_LEAD = "QUALIFIED_LEAD"
    INITIATE_CHECKOUT = "INITIATE_CHECKOUT"
    ADD_TO_CART = "ADD_TO_CART"
    VIEW_CONTENT = "VIEW_CONTENT"
    ORDER_CREATED = "ORDER_CREATED"
    ORDER_SHIPPED = "ORDER_SHIPPED"
    ORDER_DELIVERED = "ORDER_DELIVERED"
    ORDER_CANCELED = "ORDER_CANCELED"
    ORDER_RETURNED = "ORDER_RETURNED"
    CART_ABANDONED = "CART_ABANDONED"
    RATING_PROVIDED = "RATING_PROVIDED"
    REVIEW_PROVIDED = "REVIEW_PROVIDED"

    @property
    def event_name(self) -> str:
        """Meta's event name: PURCHASE -> Purchase, LEAD_SUBMITTED -> LeadSubmitted."""
        return _EVENT_NAMES[self]


_EVENT_NAMES = {t: "".join(p.capitalize() for p in t.value.split("_")) for t in EventType}


class ResultStatus(enum.StrEnum):
    SENT = "SENT"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"


class ConnectionStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    DISCONNECTED = "DISCONNECTED"


class AssetType(enum.StrEnum):
    WHATSAPP_BUSINESS_ACCOUNT = "WHATSAPP_BUSINESS_ACCOUNT"
    FACEBOOK_PAGE = "FACEBOOK_PAGE"
    INSTAGRAM_ACCOUNT = "INSTAGRAM_ACCOUNT"


@dataclass(slots=True)
class CustomerInfo:
    """Customer information as a person typed it; normalization happens later."""

    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    gender: str | None = None
    date_of_birth: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    external_id: str | None = None

    @classmethod
    def from_avro(cls, data: dict[str, Any]) -> CustomerInfo:
        return cls(*map(data.get, CUSTOMER_FIELDS))

    def merged_over(self, other: CustomerInfo) -> CustomerInfo:
        """These values, with the blanks filled from `other` (self when nothing is filled)."""
        mine, theirs = self.values(), other.values()
        if mine == theirs:
            return self
        # a value only where theirs differs, the cheaper test first
        filled = [i for i, v in enumerate(mine) if v != theirs[i] and (v is None or not v.strip())]
        if not filled:
            return self
        merged = list(mine)
        for i in filled:
            merged[i] = theirs[i]
        return CustomerInfo(*merged)

    def values(self) -> tuple[str | None, ...]:
        """Every field's value, in `CUSTOMER_FIELDS` order."""
        return _customer_values(self)


_WHATSAPP, _MESSENGER = Channel.WHATSAPP, Channel.MESSENGER  # see Channel: read per event
CUSTOMER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CustomerInfo))
_customer_values: Callable[[CustomerInfo], tuple[str | None, ...]] = operator.attrgetter(
    *CUSTOMER_FIELDS
)

_E = TypeVar("_E", bound=enum.StrEnum)


def _member(kind: type[_E], value: Any) -> _E:
    """`kind(value)`, from the enum's own map of values when it is there (a dict lookup,
    where the call searches); the call raises for a value that is not."""
    member = kind._value2member_map_.get(value) if isinstance(value, str) else None
    return member if member is not None else kind(value)  # type: ignore[return-value]


@dataclass(slots=True)
class Trigger:
    """A decoded `ConversionTriggered` message."""

    event_id: str
    occurred_at: int
    workspace_id: str
    contact_id: str
    channel: Channel
    channel_account_id: str
    channel_user_id: str | None
    connection_id: str
    dataset_id: str
    selected_whatsapp_business_account_id: str | None
    selected_page_id: str | None
    selected_instagram_account_id: str | None
    event_type: EventType
    currency: str | None
    value: str | None
    customer_info: CustomerInfo
    ctwa_clid: str | None = None
    test_event_code: str | None = None

    @classmethod
    def from_avro(cls, data: dict[str, Any]) -> Trigger:
        # a body of an older or newer writer schema, read by fastavro (the current schema's
        # bodies are read straight into a Trigger: TRIGGER_AVRO_TYPES)
        get = data.get
        return cls(
            data["event_id"],
            data["occurred_at"],
            data["workspace_id"],
            data["contact_id"],
            _member(Channel, data["channel"]),
            data["channel_account_id"],
            get("channel_user_id"),
            data["connection_id"],
            data["dataset_id"],
            get("selected_whatsapp_business_account_id"),
            get("selected_page_id"),
            get("selected_instagram_account_id"),
            _member(EventType, data["event_type"]),
            get("currency"),
            get("value"),
            CustomerInfo.from_avro(data["customer_info"]),
            get("ctwa_clid"),
            get("test_event_code"),
        )

    def replaced(self, **changes: Any) -> Trigger:
        """This trigger with some fields changed: `dataclasses.replace` without its checks of
        every field (an enriched trigger is built for most events)."""
        values = list(_trigger_values(self))
        for name, value in changes.items():
            values[_TRIGGER_INDEX[name]] = value
        return Trigger(*values)

    @property
    def selected_account_id(self) -> str | None:
        """The account ticked in the step for this trigger's channel."""
        if self.channel is _WHATSAPP:
            return self.selected_whatsapp_business_account_id
        if self.channel is _MESSENGER:
            return self.selected_page_id
        return self.selected_instagram_account_id


# the classes a `ConversionTriggered` body is read into, by their names in the schema (a
# trigger is read straight into a `Trigger`: `AvroCodec.typed_decoder`)
TRIGGER_AVRO_TYPES: dict[str, type] = {
    "io.capiconsumer.ConversionTriggered": Trigger,
    "io.capiconsumer.CustomerInfo": CustomerInfo,
    "io.capiconsumer.Channel": Channel,
    "io.capiconsumer.EventType": EventType,
}
_TRIGGER_FIELDS = tuple(f.name for f in fields(Trigger))
_TRIGGER_INDEX = {name: i for i, name in enumerate(_TRIGGER_FIELDS)}
_trigger_values: Callable[[Trigger], tuple[Any, ...]] = operator.attrgetter(*_TRIGGER_FIELDS)


@dataclass(frozen=True, slots=True)
class Asset:
    asset_type: AssetType
    asset_id: str
    registration_country: str


@dataclass(frozen=True, slots=True)
class Dataset:
    dataset_id: str
    linked_asset_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MetaConnection:
    """A decoded `MetaConnection`: who may send to which datasets, with which assets."""

    connection_id: str
    workspace_id: str
    status: ConnectionStatus
    credential_ref: str
    app_secret_ref: str | None
    assets: tuple[Asset, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    updated_at: int = 0
    _assets_by_id: dict[str, Asset] = field(default_factory=dict, compare=False, repr=False)
    _datasets_by_id: dict[str, Dataset] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._assets_by_id.update({a.asset_id: a for a in self.assets})
        self._datasets_by_id.update({d.dataset_id: d for d in self.datasets})

    @classmethod
    def from_avro(cls, data: dict[str, Any]) -> MetaConnection:
        return cls(
            connection_id=data["connection_id"],
            workspace_id=data["workspace_id"],
            status=ConnectionStatus(data["status"]),
            credential_ref=data["credential_ref"],
            app_secret_ref=data.get("app_secret_ref"),
            assets=tuple(
                Asset(AssetType(a["asset_type"]), a["asset_id"], a["registration_country"])
                for a in data.get("assets", ())
            ),
            datasets=tuple(
                Dataset(d["dataset_id"], frozenset(d.get("linked_asset_ids", ())))
                for d in data.get("datasets", ())
            ),
            updated_at=data.get("updated_at", 0),
        )

    def asset(self, asset_id: str) -> Asset | None:
        return self._assets_by_id.get(asset_id)

    def dataset(self, dataset_id: str) -> Dataset | None:
        return self._datasets_by_id.get(dataset_id)


@dataclass(slots=True)
class Identity:
    channel: Channel
    account_id: str
    user_id: str


@dataclass(slots=True)
class Contact:
    """A decoded `Contact`: what the platform knows of a person."""

    contact_id: str
    workspace_id: str
    customer_info: CustomerInfo
    identities: tuple[Identity, ...] = ()
    updated_at: int = 0

    @classmethod
    def from_avro(cls, data: dict[str, Any]) -> Contact:
        return cls(
            contact_id=data["contact_id"],
            workspace_id=data["workspace_id"],
            customer_info=CustomerInfo.from_avro(data),
            identities=tuple(
                Identity(Channel(i["channel"]), i["account_id"], i["user_id"])
                for i in data.get("identities", ())
            ),
            updated_at=data.get("updated_at", 0),
        )

    def user_id(self, channel: Channel, account_id: str) -> str | None:
        """The contact's id on `channel` for the account (PSID, IGSID or WhatsApp id)."""
        for identity in self.identities:
            if identity.channel is channel and identity.account_id == account_id:
                return identity.user_id
        return None


@dataclass(slots=True)
class AdReferral:
    """A decoded `AdReferral`: the ad a contact's conversation on a channel came from."""

    contact_id: str
    channel: Channel
    channel_account_id: str
    ctwa_clid: str | None
    ad_id: str | None
    source_url: str | None
    referred_at: int

    @classmethod
    def from_avro(cls, data: dict[str, Any]) -> AdReferral:
        return cls(
            contact_id=data["contact_id"],
            channel=Channel(data["channel"]),
            channel_account_id=data["channel_account_id"],
            ctwa_clid=data.get("ctwa_clid"),
            ad_id=data.get("ad_id"),
            source_url=data.get("source_url"),
            referred_at=data["referred_at"],
        )
