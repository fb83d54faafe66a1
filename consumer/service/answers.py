"""Meta's answers, collected on the main loop: for the checkpoint, and what they teach triage.

The loop and the drain at shutdown collect the same way: the sender moves its batches along
and hands back the outcomes that arrived; each goes to the checkpoint, and an asset Meta
refused as being in a messaging-restrictive region is remembered by triage, so that its next
events are skipped without a request. Events given up before Meta answered go back too.
"""

from __future__ import annotations

from typing import Protocol

from consumer.events.results import Reason
from consumer.meta.dispatch import Outcome
from consumer.meta.senders import Sender
from consumer.service.checkpoint import Checkpoint

__all__ = ["Answers", "RestrictedAssets"]

_RESTRICTED_REGION = Reason.RESTRICTED_REGION  # a global: see `records.py` on enum members


class RestrictedAssets(Protocol):
    """What keeps the assets Meta refused (triage: it skips their next events)."""

    def remember_restricted(self, asset_id: str) -> None: ...


class Answers:
    """Collects what the sender threads brought back; used from the main loop only."""

    def __init__(self, *, sender: Sender, checkpoint: Checkpoint, triage: RestrictedAssets) -> None:
        self._sender = sender
        self._checkpoint = checkpoint
        self._triage = triage

    def collect(self, backlog: bool = False) -> None:
        """Move the sender along; hand every answer that came back to the checkpoint."""
        for item, outcome in self._sender.step(backlog=backlog):
            if isinstance(outcome, Outcome) and outcome.reason is _RESTRICTED_REGION:
                self._triage.remember_restricted(item.trigger.channel_account_id)
            self._checkpoint.answered(item, outcome)
        self._checkpoint.abandon(self._sender.take_abandoned())
