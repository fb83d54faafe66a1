"""Sample traffic for the demo, the benchmark and the tests: connections and varied triggers.

Deterministic for a given seed. The mix covers every channel and event type, Purchases with
currency and value, pages and accounts in restricted regions (known locally, and one only Meta
knows), triggers without customer information or without a click id, channels not selected,
disconnected or unknown connections, unlinked assets, test events and repeated event ids.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumer.events.records import CUSTOMER_FIELDS

__all__ = ["SampleWorld", "sandbox_config", "write_credentials"]

_FIRST = ["John", "Marie-Claire", "José", "Anna", "Åsa", "Mohammed", "Zoë", "Li", "Oğuz", "Sam"]
_LAST = ["Smith", "O'Brien", "García", "Müller", "Nguyen", "Kowalski", "Dupont", "Tanaka"]
_CITIES = [
    ("Menlo Park", "California", "94025-1234", "US"),
    ("São Paulo", "SP", "01310-100", "BR"),
    ("Austin", "TX", "78701", "US"),
    ("Mexico City", "CDMX", "06600", "MX"),
]
_EVENT_TYPES = [
    "LEAD_SUBMITTED",
    "PURCHASE",
    "QUALIFIED_LEAD",
    "INITIATE_CHECKOUT",
    "ADD_TO_CART",
    "VIEW_CONTENT",
    "ORDER_CREATED",
    "ORDER_SHIPPED",
    "ORDER_DELIVERED",
    "ORDER_CANCELED",
    "ORDER_RETURNED",
    "CART_ABANDONED",
    "RATING_PROVIDED",
    "REVIEW_PROVIDED",
]


@dataclass(frozen=True, slots=True)
class _Account:
    channel: str
    account_id: str
    connection_id: str
    dataset_id: str


# channel accounts the sample triggers are on
_GOOD = [
    _Account("WHATSAPP", "waba-100", "conn-us", "ds-1"),
    _Account("MESSENGER", "page-200", "conn-us", "ds-1"),
    _Account("INSTAGRAM", "ig-300", "conn-us", "ds-1"),
    _Account("WHATSAPP", "waba-400", "conn-2", "ds-3"),
]
_RESTRICTED_LOCAL = [
    _Account("MESSENGER", "page-250", "conn-us", "ds-1"),  # registered in DE
    _Account("INSTAGRAM", "ig-350", "conn-us", "ds-1"),  # registered in JP
]
_RESTRICTED_AT_META = _Account("MESSENGER", "page-260", "conn-us", "ds-1")  # only Meta knows
_UNLINKED = _Account("MESSENGER", "page-200", "conn-us", "ds-2")
_DISCONNECTED = _Account("WHATSAPP", "waba-900", "conn-off", "ds-9")
_UNKNOWN = _Account("WHATSAPP", "waba-100", "conn-missing", "ds-1")


def _connection(  # noqa: PLR0917 - called as rows of a table of literal connections
    connection_id: str,
    status: str,
    credential_ref: str,
    app_secret_ref: str | None,
    assets: list[tuple[str, str, str]],
    datasets: dict[str, list[str]],
) -> dict[str, Any]:
    return {
        "connection_id": connection_id,
        "workspace_id": "ws-1",
        "status": status,
        "credential_ref": credential_ref,
        "app_secret_ref": app_secret_ref,
        "assets": [
            {"asset_type": t, "asset_id": i, "registration_country": c} for t, i, c in assets
        ],
        "datasets": [{"dataset_id": d, "linked_asset_ids": ids} for d, ids in datasets.items()],
        "updated_at": int(time.time() * 1000),
    }


_SELECTED_KEYS = (
    "selected_whatsapp_business_account_id",
    "selected_page_id",
    "selected_instagram_account_id",
)


class SampleWorld:
    """Connections, credential files and triggers that fit together."""

    credentials = {
        "token-us": "EAAB-sample-token-us",
        "secret-us": "sample-app-secret",
        "token-2": "EAAB-sample-token-2",
        "token-off": "EAAB-sample-token-off",
    }

    def connections(self) -> list[dict[str, Any]]:
        page_assets = [
            ("WHATSAPP_BUSINESS_ACCOUNT", "waba-100", "US"),
            ("FACEBOOK_PAGE", "page-200", "US"),
            ("INSTAGRAM_ACCOUNT", "ig-300", "BR"),
            ("FACEBOOK_PAGE", "page-250", "DE"),
            ("INSTAGRAM_ACCOUNT", "ig-350", "JP"),
            ("FACEBOOK_PAGE", "page-260", "US"),
        ]
        return [
            _connection(
                "conn-us",
                "ACTIVE",
                "token-us",
                "secret-us",
                page_assets,
                {"ds-1": [a[1] for a in page_assets], "ds-2": ["waba-100"]},
            ),
            _connection(
                "conn-2",
                "ACTIVE",
                "token-2",
                None,
                [("WHATSAPP_BUSINESS_ACCOUNT", "waba-400", "FR")],
                {"ds-3": ["waba-400"]},
            ),
            _connection(
                "conn-off",
                "DISCONNECTED",
                "token-off",
                None,
                [("WHATSAPP_BUSINESS_ACCOUNT", "waba-900", "US")],
                {"ds-9": ["waba-900"]},
            ),
        ]

    def contacts(self, count: int = 5000) -> list[dict[str, Any]]:
        """Contacts `c-0` .. `c-{count-1}`, with their Messenger and Instagram identities."""
        rng = random.Random(count)
        out = []
        for k in range(count):
            city, state, zip_code, country = rng.choice(_CITIES)
            out.append(
                {
                    "contact_id": f"c-{k}",
                    "workspace_id": "ws-1",
                    "email": f"{rng.choice(_FIRST)}.{k}@contact.example".replace("'", ""),
                    "phone": f"+1 650 555 {k % 10000:04d}",
                    "first_name": rng.choice(_FIRST),
                    "last_name": rng.choice(_LAST),
                    "gender": rng.choice(["f", "m", None]),
                    "date_of_birth": "1988-07-14",
                    "city": city,
                    "state": state,
                    "zip": zip_code,
                    "country": country,
                    "external_id": f"crm-c{k}",
                    "identities": [
                        {"channel": "MESSENGER", "account_id": "page-200", "user_id": f"psid-c{k}"},
                        {"channel": "INSTAGRAM", "account_id": "ig-300", "user_id": f"igsid-c{k}"},
                    ],
                    "updated_at": int(time.time() * 1000),
                }
            )
        return out

    def referrals(self, count: int = 5000, now_ms: int | None = None) -> list[dict[str, Any]]:
        """A WhatsApp referral for every even contact: `c-4k` on waba-100, `c-4k+2` on waba-400."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return [
            {
                "contact_id": f"c-{k}",
                "channel": "WHATSAPP",
                "channel_account_id": _referral_waba(k),
                "ctwa_clid": f"ARAkLkA8rmlFeiCkRef{k:06d}",
                "ad_id": f"ad-{k % 7}",
                "source_url": None,
                "referred_at": now_ms - 2 * 3_600_000,
            }
            for k in range(0, count, 2)
        ]

    def triggers(
        self, count: int, seed: int = 7, now_ms: int | None = None, *, only_valid: bool = False
    ) -> list[dict[str, Any]]:
        """`count` trigger records; `only_valid` keeps to ones that should be SENT."""
        rng = random.Random(seed)
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        out: list[dict[str, Any]] = []
        for i in range(count):
            roll = rng.random() if not only_valid else 1.0
            account = rng.choice(_GOOD)
            record = self._trigger(rng, i, account, now_ms)
            if roll < 0.20:
                record = self._refused(rng, i, roll, record, now_ms)
            else:
                previous = out[-1] if out else None
                record = self._varied(rng, i, roll, record, now_ms, previous=previous)
            out.append(record)
        return out

    def _refused(
        self, rng: random.Random, i: int, roll: float, record: dict[str, Any], now_ms: int
    ) -> dict[str, Any]:
        """One in five triggers: what the rules refuse."""
        if roll < 0.05:
            return self._trigger(rng, i, rng.choice(_RESTRICTED_LOCAL), now_ms)
        if roll < 0.06:
            return self._trigger(rng, i, _RESTRICTED_AT_META, now_ms)
        if roll < 0.10:  # nothing typed, and no contact to fill from
            return {**record, "customer_info": _empty_info(), "contact_id": f"c-anon-{i}"}
        if roll < 0.13:  # an organic WhatsApp conversation: no click id anywhere
            record = self._trigger(rng, i, _GOOD[0], now_ms)
            return {**record, "ctwa_clid": None, "contact_id": f"c-organic-{i}"}
        if roll < 0.15:
            return {**record, **dict.fromkeys(_SELECTED_KEYS)}
        if roll < 0.17:
            return self._trigger(rng, i, _DISCONNECTED, now_ms)
        if roll < 0.18:
            return self._trigger(rng, i, _UNKNOWN, now_ms)
        return self._trigger(rng, i, _UNLINKED, now_ms)

    def _varied(
        self,
        rng: random.Random,
        i: int,
        roll: float,
        record: dict[str, Any],
        now_ms: int,
        *,
        previous: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The others: test events, repeats, and what enrichment completes from the tables."""
        if roll < 0.21:
            return {**record, "test_event_code": "TEST12345"}
        if roll < 0.22 and previous is not None:  # the same conversion triggered again
            return dict(previous)
        if roll < 0.30:  # the click id comes from the contact's referral
            k = 2 * rng.randrange(2500)
            waba = _GOOD[0] if _referral_waba(k) == "waba-100" else _GOOD[3]
            return {
                **self._trigger(rng, i, waba, now_ms),
                "contact_id": f"c-{k}",
                "ctwa_clid": None,
            }
        if roll < 0.36:  # the PSID / IGSID comes from the contact
            return {
                **self._trigger(rng, i, rng.choice(_GOOD[1:3]), now_ms),
                "channel_user_id": None,
            }
        if roll < 0.40:  # the customer information comes from the contact
            return {**record, "customer_info": _empty_info()}
        return record

    def _trigger(
        self, rng: random.Random, i: int, account: _Account, now_ms: int
    ) -> dict[str, Any]:
        event_type = "PURCHASE" if rng.random() < 0.3 else rng.choice(_EVENT_TYPES)
        # what the step maps comes from the contact: the same person converts again
        k = i % 5000
        person = random.Random(k)
        city, state, zip_code, country = person.choice(_CITIES)
        first, last = person.choice(_FIRST), person.choice(_LAST)
        selected: dict[str, str | None] = dict.fromkeys(("WHATSAPP", "MESSENGER", "INSTAGRAM"))
        selected[account.channel] = account.account_id
        phone = _phone(country, k, person.random())
        return {
            "event_id": f"evt-{i:08d}-{rng.getrandbits(32):08x}",
            "occurred_at": now_ms - rng.randint(1_000, 3_600_000),
            "workspace_id": "ws-1",
            "contact_id": f"c-{k}",
            "channel": account.channel,
            "channel_account_id": account.account_id,
            "channel_user_id": None if account.channel == "WHATSAPP" else f"psid-{i:07d}",
            "connection_id": account.connection_id,
            "dataset_id": account.dataset_id,
            "selected_whatsapp_business_account_id": selected["WHATSAPP"],
            "selected_page_id": selected["MESSENGER"],
            "selected_instagram_account_id": selected["INSTAGRAM"],
            "event_type": event_type,
            "currency": "USD" if event_type == "PURCHASE" else None,
            "value": f"{rng.randint(100, 99_999) / 100:.2f}" if event_type == "PURCHASE" else None,
            "customer_info": {
                "email": f"  {first}.{last}{k}@Example.com ".replace("'", ""),
                "phone": phone,
                "first_name": first,
                "last_name": last,
                "gender": person.choice(["Female", "male", "F", None]),
                "date_of_birth": person.choice(["1990-03-04", "04/03/1985", None]),
                "city": city,
                "state": state,
                "zip": zip_code,
                "country": country,
                "external_id": f"crm-{k}",
            },
            "ctwa_clid": f"ARAkLkA8rmlFeiCktEJQ{i:06d}" if account.channel == "WHATSAPP" else None,
            "test_event_code": None,
        }


def _phone(country: str, k: int, roll: float) -> str:
    """A number as the customer typed it: international or national, valid in their country;
    one in fifty is a typo that matches nobody."""
    if roll < 0.02:
        return f"555-{k:04d}"
    written = {
        "US": (f"+1 (650) 555-{k:04d}", f"650 555 {k:04d}"),
        "BR": (f"+55 11 98{k % 1000:03d}-{k:04d}", f"(11) 98{k % 1000:03d}-{k:04d}"),
        "MX": (f"+52 55 5{k % 1000:03d} {k:04d}", f"55 5{k % 1000:03d} {k:04d}"),
    }[country]
    return written[0] if roll < 0.5 else written[1]


def _referral_waba(k: int) -> str:
    return "waba-100" if k % 4 == 0 else "waba-400"


def _empty_info() -> dict[str, Any]:
    return dict.fromkeys(CUSTOMER_FIELDS, None)


def sandbox_config(world: SampleWorld) -> dict[str, Any]:
    """The sandbox's view of the sample world: tokens, datasets, Meta-side restrictions."""
    c = world.credentials
    return {
        "tokens": {
            c["token-us"]: {"datasets": ["ds-1", "ds-2"], "app_secret": c["secret-us"]},
            c["token-2"]: {"datasets": ["ds-3"]},
        },
        "restricted_assets": ["page-260"],
        "linked_assets": {"ds-2": ["waba-100"]},
    }


def write_credentials(directory: Path, credentials: Mapping[str, str]) -> Path:
    """One file per credential (its name the `credential_ref`), readable by the owner only;
    the folder is created."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, value in credentials.items():
        path = directory / name
        path.write_text(value, encoding="utf-8")
        path.chmod(0o600)
    return directory
