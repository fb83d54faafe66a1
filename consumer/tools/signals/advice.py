"""What to do about each reason an event was not sent: one short line per reason code.

Every code of the contract (`Reason`) has its own line; a code this version does not know
(a newer service's) gets `UNKNOWN_REASON_ADVICE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from consumer.events.results import Reason

__all__ = ["REASON_ADVICE", "UNKNOWN_REASON_ADVICE", "advice_for"]

UNKNOWN_REASON_ADVICE = "a reason this version does not know: see the results' detail"

REASON_ADVICE: Mapping[str, str] = MappingProxyType(
    {
        # SKIPPED: by design
        Reason.RESTRICTED_REGION: (
            "nothing: Meta refuses events of pages and accounts registered in these countries"
        ),
        Reason.CHANNEL_NOT_SELECTED: (
            "select the page or account of the conversation's channel in the workflow step"
        ),
        Reason.NO_CUSTOMER_INFORMATION: "map the contact's email or phone in the workflow step",
        Reason.NOT_AD_ATTRIBUTED: (
            "nothing for organic conversations; WhatsApp events count only when they come "
            "from a click-to-WhatsApp ad"
        ),
        Reason.DUPLICATE: "nothing: the event was already processed (upstream sent it again)",
        Reason.CONNECTION_DISCONNECTED: "reconnect the Meta business connection",
        # FAILED: needs attention
        Reason.UNDECODABLE: "fix the producer of the trigger, then replay the dead letters",
        Reason.INVALID_EVENT: (
            "fix the step's mapping (a Purchase needs a currency and a value; Messenger and "
            "Instagram need the user id); see the results' detail"
        ),
        Reason.EVENT_TOO_OLD: ("deliver triggers sooner: Meta takes no event older than 7 days"),
        Reason.UNKNOWN_CONNECTION: (
            "publish the connection to the connections table, then replay the dead letters"
        ),
        Reason.ASSET_NOT_LINKED: (
            "link the dataset to the page or account in Meta Events Manager, then replay"
        ),
        Reason.MISSING_CREDENTIALS: (
            "put the connection's token file in CAPI_CREDENTIALS_DIR, then replay"
        ),
        Reason.META_AUTH_ERROR: (
            "renew the access token or grant the permission Meta asks for, then replay"
        ),
        Reason.META_REJECTED: "fix the field Meta names in the results' meta_error",
        Reason.RETRIES_EXHAUSTED: (
            "check Meta's status and throttling; replay the dead letters once it recovers"
        ),
        Reason.DATASET_UNAVAILABLE: (
            "check the dataset id and that the token has access to it, then replay"
        ),
    }
)


def advice_for(reason: str) -> str:
    """The line for `reason`; `UNKNOWN_REASON_ADVICE` for a code not in the contract."""
    return REASON_ADVICE.get(reason, UNKNOWN_REASON_ADVICE)
