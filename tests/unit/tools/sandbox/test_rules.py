import copy
import hashlib
import hmac

import pytest

from consumer.tools.sandbox.config import SandboxConfig
from consumer.tools.sandbox.rules import ValidationFailure, validate_request

NOW = 1_780_000_000
H = "a" * 64
CONFIG = SandboxConfig.from_json(
    {
        "tokens": {
            "tok": {"datasets": ["ds-1", "ds-2"]},
            "tok-secret": {"datasets": "*", "app_secret": "s3cret"},
        },
        "restricted_assets": ["page-eu"],
        "linked_assets": {"ds-2": ["waba-1"]},
    }
)


def _event(**overrides):
    event = {
        "event_name": "LeadSubmitted",
        "event_time": NOW - 60,
        "event_id": "e1",
        "action_source": "business_messaging",
        "messaging_channel": "whatsapp",
        "user_data": {
            "em": H,
            "whatsapp_business_account_id": "waba-1",
            "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
        },
    }
    event.update(overrides)
    return event


def _validate(body, version="v24.0", dataset="ds-1", query=None):
    return validate_request(version, dataset, query or {}, body, CONFIG, now=NOW)


def test_valid_request_is_accepted():
    assert _validate({"access_token": "tok", "data": [_event()]}) == [_event()]


def _ud(**changes):
    ud = copy.deepcopy(_event()["user_data"])
    for k, v in changes.items():
        if v is None:
            ud.pop(k, None)
        else:
            ud[k] = v
    return ud


MESSENGER_UD = {"em": H, "page_id": "page-1", "page_scoped_user_id": "psid"}
IG_UD = {"em": H, "ig_account_id": "ig-1", "ig_sid": "igsid"}


@pytest.mark.parametrize(
    ("body", "kw", "code", "subcode"),
    [
        ({"access_token": "tok", "data": [_event()]}, {"version": "v19.0"}, 2635, None),
        ({"data": [_event()]}, {}, 2500, None),
        ({"access_token": "nope", "data": [_event()]}, {}, 190, None),
        (
            {"access_token": "tok", "data": [_event()]},
            {"query": {"access_token": "tok"}},
            100,
            None,
        ),
        ({"access_token": "tok", "data": [_event()]}, {"dataset": "ds-x"}, 100, 33),
        ({"access_token": "tok-secret", "data": [_event()]}, {}, 100, None),
        (
            {"access_token": "tok-secret", "appsecret_proof": "0" * 64, "data": [_event()]},
            {},
            100,
            None,
        ),
        ({"access_token": "tok", "data": []}, {}, 100, None),
        ({"access_token": "tok", "data": [_event()] * 1001}, {}, 100, None),
        ({"access_token": "tok", "data": [_event(event_name="Lead")]}, {}, 100, 2804066),
        ({"access_token": "tok", "data": [_event(event_time=NOW - 8 * 86400)]}, {}, 100, 2804003),
        ({"access_token": "tok", "data": [_event(event_time=NOW + 3600)]}, {}, 100, 2804004),
        ({"access_token": "tok", "data": [_event(event_time="now")]}, {}, 100, 2804064),
        ({"access_token": "tok", "data": [_event(action_source="website")]}, {}, 100, 2804064),
        ({"access_token": "tok", "data": [_event(messaging_channel=None)]}, {}, 100, 2804063),
        (
            {"access_token": "tok", "data": [_event(user_data=_ud(em="john@x.com"))]},
            {},
            100,
            2804064,
        ),
        ({"access_token": "tok", "data": [_event(user_data=_ud(em=H.upper()))]}, {}, 100, 2804064),
        ({"access_token": "tok", "data": [_event(user_data=_ud(ctwa_clid=H))]}, {}, 100, 2804064),
        (
            {"access_token": "tok", "data": [_event(user_data=_ud(ctwa_clid="bad clid!"))]},
            {},
            100,
            2804087,
        ),
        ({"access_token": "tok", "data": [_event(user_data=_ud(fbp="fb.1.2"))]}, {}, 100, 2804064),
        (
            {"access_token": "tok", "data": [_event(user_data=_ud(client_ip_address="1.2.3.4"))]},
            {},
            100,
            2804064,
        ),
        (
            {
                "access_token": "tok",
                "data": [_event(user_data=_ud(whatsapp_business_account_id=None))],
            },
            {},
            100,
            2804064,
        ),
        (
            {
                "access_token": "tok",
                "data": [
                    _event(messaging_channel="messenger", user_data={"em": H, "page_id": "p"})
                ],
            },
            {},
            100,
            2804064,
        ),
        (
            {
                "access_token": "tok",
                "data": [_event(messaging_channel="instagram", user_data={"em": H, "ig_sid": "s"})],
            },
            {},
            100,
            2804079,
        ),
        (
            {
                "access_token": "tok",
                "data": [
                    _event(messaging_channel="instagram", user_data={"em": H, "ig_account_id": "a"})
                ],
            },
            {},
            100,
            2804075,
        ),
        (
            {
                "access_token": "tok",
                "data": [
                    _event(
                        messaging_channel="instagram",
                        user_data={**IG_UD, "instagram_business_account_id": "a"},
                    )
                ],
            },
            {},
            100,
            2804064,
        ),
        (
            {
                "access_token": "tok",
                "data": [
                    _event(
                        messaging_channel="instagram",
                        user_data={"em": H, "instagram_business_account_id": "a", "ig_sid": "s"},
                    )
                ],
            },
            {},
            100,
            2804079,
        ),
        (
            {
                "access_token": "tok",
                "data": [
                    _event(event_name="Purchase", custom_data={"currency": "ZZZ", "value": 1})
                ],
            },
            {},
            100,
            2804064,
        ),
        ({"access_token": "tok", "data": [_event(event_name="Purchase")]}, {}, 100, 2804064),
        (
            {
                "access_token": "tok",
                "data": [
                    _event(event_name="Purchase", custom_data={"currency": "USD", "value": "1"})
                ],
            },
            {},
            100,
            2804064,
        ),
        (
            {
                "access_token": "tok",
                "data": [_event(messaging_channel="messenger", user_data=MESSENGER_UD)],
            },
            {"dataset": "ds-2"},
            100,
            2804064,
        ),
        ({"access_token": "tok", "data": [_event(extra=1)]}, {}, 100, 2804064),
    ],
)
def test_meta_refusals(body, kw, code, subcode):
    with pytest.raises(ValidationFailure) as info:
        _validate(body, **kw)
    assert (info.value.code, info.value.subcode) == (code, subcode)
    error = info.value.error_body("F")["error"]
    assert error["code"] == code
    assert error["fbtrace_id"] == "F"


def test_restrictive_region_answer_names_itself():
    body = {
        "access_token": "tok",
        "data": [
            _event(messaging_channel="messenger", user_data={**MESSENGER_UD, "page_id": "page-eu"})
        ],
    }
    with pytest.raises(
        ValidationFailure, match="Messaging Event Within Messaging Restrictive Region"
    ):
        _validate(body)


def test_valid_appsecret_proof_is_accepted():
    proof = hmac.new(b"s3cret", b"tok-secret", hashlib.sha256).hexdigest()
    body = {"access_token": "tok-secret", "appsecret_proof": proof, "data": [_event()]}
    assert len(_validate(body, dataset="anything")) == 1


def test_every_channel_and_purchase_shape_is_accepted():
    events = [
        _event(messaging_channel="messenger", user_data=MESSENGER_UD),
        _event(messaging_channel="instagram", user_data=IG_UD),
        _event(event_name="Purchase", custom_data={"currency": "USD", "value": 12.5}),
        _event(user_data={"em": [H, "b" * 64], "whatsapp_business_account_id": "w"}),
    ]
    assert (
        len(
            _validate(
                {
                    "access_token": "tok",
                    "data": events,
                    "test_event_code": "T1",
                    "partner_agent": "x",
                }
            )
        )
        == 4
    )
