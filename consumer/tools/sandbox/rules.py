"""What Meta checks in a business-messaging Conversions API request, as pure functions."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from functools import cache
from typing import Any

import pycountry

from consumer.tools.sandbox.config import SandboxConfig

__all__ = [
    "EVENT_NAMES",
    "SUPPORTED_VERSIONS",
    "ValidationFailure",
    "validate_request",
]

SUPPORTED_VERSIONS = frozenset({"v22.0", "v23.0", "v24.0", "v25.0", "v26.0"})
EVENT_NAMES = frozenset(
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
_HASHED = frozenset(
    {"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"}
)
_PLAIN_IDS = {
    "whatsapp": ("whatsapp_business_account_id", "ctwa_clid"),
    "messenger": ("page_id", "page_scoped_user_id"),
    "instagram": ("ig_account_id", "ig_sid"),
}
_ALL_PLAIN = frozenset(k for keys in _PLAIN_IDS.values() for k in keys)
_FORBIDDEN = frozenset({"client_ip_address", "client_user_agent", "fbc", "fbp"})
_EVENT_KEYS = frozenset(
    {
        "event_name",
        "event_time",
        "event_id",
        "action_source",
        "messaging_channel",
        "user_data",
        "custom_data",
    }
)
_BODY_KEYS = frozenset(
    {"data", "access_token", "test_event_code", "partner_agent", "appsecret_proof"}
)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CLID = re.compile(r"[A-Za-z0-9_\-.]{8,512}")
_MAX_EVENTS = 1000
_MAX_AGE_S = 7 * 24 * 3600
_MAX_FUTURE_S = 600
RESTRICTIVE_REGION = "Messaging Event Within Messaging Restrictive Region"


class ValidationFailure(Exception):
    """A request Meta would refuse, with the Graph API error it would answer."""

    def __init__(
        self,
        message: str,
        *,
        code: int = 100,
        subcode: int | None = None,
        type_: str = "OAuthException",
        user_title: str | None = None,
        user_msg: str | None = None,
        http_status: int = 400,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.subcode = subcode
        self.type = type_
        self.user_title = user_title
        self.user_msg = user_msg
        self.http_status = http_status

    def error_body(self, fbtrace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": str(self),
            "type": self.type,
            "code": self.code,
            "fbtrace_id": fbtrace_id,
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.user_title:
            error["error_user_title"] = self.user_title
        if self.user_msg:
            error["error_user_msg"] = self.user_msg
        error["is_transient"] = False
        return {"error": error}


def _invalid(
    message: str, subcode: int | None = 2804064, title: str | None = None
) -> ValidationFailure:
    return ValidationFailure(
        f"(#100) {message}",
        subcode=subcode,
        user_title=title or "Invalid parameter",
        user_msg=message,
    )


def validate_request(
    version: str,
    dataset_id: str,
    query: dict[str, str],
    body: dict[str, Any],
    config: SandboxConfig,
    *,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """The events of a valid request, or `ValidationFailure` with Meta's error."""
    now = time.time() if now is None else now
    _authorize(version, dataset_id, query, body, config)
    unknown = set(body) - _BODY_KEYS
    if unknown:
        raise _invalid(f"unknown parameters: {', '.join(sorted(unknown))}", subcode=None)
    for key in ("test_event_code", "partner_agent"):
        if key in body and not isinstance(body[key], str):
            raise _invalid(f"param {key} must be a string", subcode=None)
    data = body.get("data")
    if not isinstance(data, list) or not data:
        raise _invalid("The parameter data is required and must be a non-empty array", None)
    if len(data) > _MAX_EVENTS:
        raise _invalid(f"param data must be an array of at most {_MAX_EVENTS} events", None)
    linked = config.linked_assets.get(dataset_id)
    for index, event in enumerate(data):
        _validate_event(index, event, now, config, linked)
    return data


def _authorize(
    version: str,
    dataset_id: str,
    query: dict[str, str],
    body: dict[str, Any],
    config: SandboxConfig,
) -> None:
    """The version, the token and its proof, and the token's right to the dataset."""
    if version not in SUPPORTED_VERSIONS:
        raise ValidationFailure(
            f"(#2635) You are calling a deprecated or unknown version of the Graph API "
            f"({version}). Please update to a supported version.",
            code=2635,
        )
    if "access_token" in query or "appsecret_proof" in query:
        raise _invalid(
            "access_token and appsecret_proof must be sent in the body, not the URL", subcode=None
        )
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ValidationFailure(
            "An active access token must be used to query information about the current user.",
            code=2500,
        )
    grant = config.tokens.get(token)
    if grant is None:
        raise ValidationFailure(
            "Invalid OAuth access token - Cannot parse access token", code=190, http_status=401
        )
    if grant.app_secret is not None:
        proof = body.get("appsecret_proof")
        expected = hmac.new(grant.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        if not isinstance(proof, str) or not proof:
            raise ValidationFailure(
                "API calls from the server require an appsecret_proof argument",
                type_="GraphMethodException",
            )
        if not hmac.compare_digest(proof, expected):
            raise ValidationFailure(
                "Invalid appsecret_proof provided in the API argument",
                type_="GraphMethodException",
            )
    if grant.datasets is not None and dataset_id not in grant.datasets:
        raise ValidationFailure(
            f"Unsupported post request. Object with ID '{dataset_id}' does not exist, cannot be "
            "loaded due to missing permissions, or does not support this operation.",
            subcode=33,
            type_="GraphMethodException",
        )


def _validate_event(
    index: int,
    event: Any,
    now: float,
    config: SandboxConfig,
    linked: frozenset[str] | None,
) -> None:
    where = f"data[{index}]"
    if not isinstance(event, dict):
        raise _invalid(f"{where} must be an object")
    unknown = set(event) - _EVENT_KEYS
    if unknown:
        raise _invalid(f"{where} has unknown parameters: {', '.join(sorted(unknown))}")
    name = event.get("event_name")
    if name not in EVENT_NAMES:
        raise _invalid(
            f"{where}.event_name {name!r} is not a supported business messaging event",
            subcode=2804066,
            title="Invalid event type",
        )
    event_time = event.get("event_time")
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        raise _invalid(f"{where}.event_time must be a Unix timestamp in seconds")
    if event_time < now - _MAX_AGE_S:
        raise _invalid(
            f"{where}.event_time is more than 7 days in the past",
            subcode=2804003,
            title="Event Timestamp Too Old",
        )
    if event_time > now + _MAX_FUTURE_S:
        # Meta documents no limit for future times; they are reported to fail. The subcode is
        # an assumption.
        raise _invalid(f"{where}.event_time is in the future", subcode=2804004)
    if "event_id" in event and (not isinstance(event["event_id"], str) or not event["event_id"]):
        raise _invalid(f"{where}.event_id must be a non-empty string")
    if event.get("action_source") != "business_messaging":
        raise _invalid(f"{where}.action_source must be business_messaging")
    channel = event.get("messaging_channel")
    if channel not in _PLAIN_IDS:
        raise _invalid(
            f"{where}.messaging_channel is missing or invalid",
            subcode=2804063,
            title="Missing messaging channel",
        )
    _validate_user_data(where, channel, event.get("user_data"), config, linked)
    _validate_custom_data(where, name, event.get("custom_data"))


def _validate_user_data(
    where: str,
    channel: str,
    user_data: Any,
    config: SandboxConfig,
    linked: frozenset[str] | None,
) -> None:
    if not isinstance(user_data, dict) or not user_data:
        raise _invalid(f"{where}.user_data is required")
    forbidden = set(user_data) & _FORBIDDEN
    if forbidden:
        raise _invalid(
            f"{where}.user_data.{sorted(forbidden)[0]} is not allowed for business messaging"
        )
    # Meta answers a missing channel id before an unknown key: an Instagram event that names its
    # account `instagram_business_account_id` gets 2804079, one with a PSID instead of an
    # IGSID gets 2804075 (seen in live answers).
    account_key, account = _validate_channel_ids(where, channel, user_data)
    unknown = set(user_data) - (_HASHED | set(_PLAIN_IDS[channel]))
    if unknown:
        raise _invalid(
            f"{where}.user_data has parameters not valid for {channel}: "
            f"{', '.join(sorted(unknown))}"
        )
    for key in _HASHED & set(user_data):
        values = user_data[key] if isinstance(user_data[key], list) else [user_data[key]]
        if not values or not all(isinstance(v, str) and _SHA256.fullmatch(v) for v in values):
            raise _invalid(f"{where}.user_data.{key} must be a lowercase SHA-256 hex digest")
    for key in _ALL_PLAIN & set(user_data):
        value = user_data[key]
        if not isinstance(value, str) or not value or _SHA256.fullmatch(value):
            raise _invalid(f"{where}.user_data.{key} must be sent unhashed")
    if linked is not None and account not in linked:
        subcode = 2804133 if channel == "instagram" else 2804064
        raise _invalid(f"{where}: the dataset is not linked to {account_key} {account}", subcode)
    if channel != "whatsapp" and account in config.restricted_assets:
        raise ValidationFailure(
            RESTRICTIVE_REGION,
            user_title=RESTRICTIVE_REGION,
            user_msg="This page or account is in a region where messaging events are restricted.",
        )


@cache
def _currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)


def _validate_channel_ids(where: str, channel: str, user_data: dict[str, Any]) -> tuple[str, Any]:
    """The channel's account and user ids are there; returns the account's key and value."""
    account_key, user_key = _PLAIN_IDS[channel]
    account = user_data.get(account_key)
    if channel == "whatsapp":
        if not account:
            raise _invalid(f"{where}.user_data.whatsapp_business_account_id is required")
        clid = user_data.get("ctwa_clid")
        if clid is not None and not (isinstance(clid, str) and _CLID.fullmatch(clid)):
            raise _invalid(
                f"{where}.user_data.ctwa_clid is invalid",
                subcode=2804087,
                title="Messaging Event Invalid Ctwa Clid",
            )
    elif channel == "messenger":
        if not account or not user_data.get(user_key):
            raise _invalid(f"{where}.user_data needs page_id and page_scoped_user_id")
    else:
        if not account:
            raise _invalid(
                f"{where}.user_data.ig_account_id is required",
                subcode=2804079,
                title="Missing IG account ID parameter",
            )
        if not user_data.get(user_key):
            raise _invalid(f"{where}.user_data.ig_sid is required", subcode=2804075)
    return account_key, account


def _validate_custom_data(where: str, name: str, custom: Any) -> None:
    if custom is None:
        if name == "Purchase":
            raise _invalid(f"{where}: a Purchase needs custom_data.currency and value")
        return
    if not isinstance(custom, dict):
        raise _invalid(f"{where}.custom_data must be an object")
    currency, value = custom.get("currency"), custom.get("value")
    if name == "Purchase" and (currency is None or value is None):
        raise _invalid(f"{where}: a Purchase needs custom_data.currency and value")
    if currency is not None and not (
        isinstance(currency, str) and currency.upper() in _currencies()
    ):
        raise _invalid(f"{where}.custom_data.currency must be an ISO 4217 code")
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or value < 0
    ):
        raise _invalid(f"{where}.custom_data.value must be a non-negative number")
