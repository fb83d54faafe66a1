"""Enrichment: what the contact and the click-to-WhatsApp referral add to a trigger (pure).

- Customer information: the step's values win; blanks are filled from the contact.
- PSID / IGSID: the message's, else the contact's identity for that channel and account.
- WhatsApp click id: the message's, else the contact's latest referral on WhatsApp for the same
  WABA when it happened within the attribution window before the event (and not after it,
  beyond a small clock skew).
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.events.records import AdReferral, Channel, Contact, Trigger

__all__ = ["Enrichment", "enrich", "referral_key", "wants_referral"]

_CLOCK_SKEW_MS = 5 * 60 * 1000
_WHATSAPP = Channel.WHATSAPP  # a module global: see `records.py` on reading enum members


@dataclass(slots=True)
class Enrichment:
    """The enriched trigger, and whether the contact and the referral added anything."""

    trigger: Trigger
    contact_used: bool
    referral_used: bool


def referral_key(trigger: Trigger) -> str:
    """The key of the `ad-referrals` table for a trigger: `<contact_id>:<channel>`."""
    return f"{trigger.contact_id}:{trigger.channel}"  # a StrEnum formats as its value


def wants_referral(trigger: Trigger) -> bool:
    """A WhatsApp trigger without the ad's click id: the referral table may supply it."""
    return trigger.channel is _WHATSAPP and not (trigger.ctwa_clid or "").strip()


def enrich(
    trigger: Trigger,
    contact: Contact | None,
    referral: AdReferral | None,
    attribution_window_ms: int,
) -> Enrichment:
    changes: dict[str, object] = {}
    contact_used = referral_used = False
    if contact is not None:
        merged = trigger.customer_info.merged_over(contact.customer_info)
        if merged is not trigger.customer_info:  # a new one only when it filled a blank
            changes["customer_info"] = merged
            contact_used = True
        if trigger.channel is not _WHATSAPP and not (trigger.channel_user_id or "").strip():
            user_id = contact.user_id(trigger.channel, trigger.channel_account_id)
            if user_id:
                changes["channel_user_id"] = user_id
                contact_used = True
    if (
        referral is not None
        and wants_referral(trigger)
        and _attributes(trigger, referral, attribution_window_ms)
    ):
        changes["ctwa_clid"] = referral.ctwa_clid
        referral_used = True
    enriched = trigger.replaced(**changes) if changes else trigger
    return Enrichment(enriched, contact_used, referral_used)


def _attributes(trigger: Trigger, referral: AdReferral, window_ms: int) -> bool:
    return (
        referral.channel is _WHATSAPP
        and referral.contact_id == trigger.contact_id
        and referral.channel_account_id == trigger.channel_account_id
        and bool((referral.ctwa_clid or "").strip())
        and trigger.occurred_at - window_ms
        <= referral.referred_at
        <= trigger.occurred_at + _CLOCK_SKEW_MS
    )
