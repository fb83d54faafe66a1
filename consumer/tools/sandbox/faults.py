"""Fault injection for the sandbox: what Meta and the network do on a bad day, per dataset.

    {"ds-1": {"latency_ms": 300, "errors": {"500": 0.05, "2": 0.05, "17": 0.02},
              "timeout_rate": 0.01, "timeout_s": 30, "drop_rate": 0.01, "regain_minutes": 0,
              "lost_answers": {"reset": 0.01, "timeout": 0.01, "503": 0.01,
                               "no_events_received": 0.01}},
     "*": {...}}

`errors` maps a Graph API error code (or an HTTP status of 500 and up, answered without a Graph
error body) to the share of requests that get it. A timeout holds the request longer than
clients wait; a drop closes the connection without an answer. These strike before the request
is looked at, so a request that fails them was not accepted: retrying it cannot double an event.

`lost_answers` strike after: the request is checked as usual and, when it is accepted, its
events are stored (Meta has them); then its answer is lost. `reset` resets the connection,
`timeout` holds the answer past the client's wait (`timeout_s`) and closes, a status of 500 and
up is answered instead of the acceptance, `no_events_received` answers 200 without the count.
The client cannot tell these from a failure before acceptance: a retry stores the events again.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Fault", "FaultKind", "FaultPlan", "graph_error"]

FaultKind = Literal["none", "status", "graph", "timeout", "drop", "reset", "no_events_received"]
_LOST_ANSWER_KINDS: dict[str, FaultKind] = {
    "reset": "reset",
    "timeout": "timeout",
    "no_events_received": "no_events_received",
}

# Graph API error answers: HTTP status, message, transient flag
_GRAPH_ERRORS: dict[int, tuple[int, str, bool]] = {
    1: (500, "An unknown error occurred", True),
    2: (503, "An unexpected error has occurred. Please retry your request later.", True),
    4: (400, "(#4) Application request limit reached", True),
    17: (400, "(#17) User request limit reached", True),
    32: (400, "(#32) Page request limit reached", True),
    613: (400, "(#613) Calls to this api have exceeded the rate limit.", True),
    80004: (400, "(#80004) There have been too many calls to this ad-account.", True),
    190: (401, "Invalid OAuth access token - Cannot parse access token", False),
    200: (403, "(#200) Requires business_management permission to manage the object", False),
}


def graph_error(
    code: int, fbtrace_id: str, regain_minutes: int = 0
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """HTTP status, body and headers of a Graph API error with `code`."""
    status, message, transient = _GRAPH_ERRORS[code]
    headers: dict[str, str] = {}
    if code in (4, 17, 32, 613, 80004):
        headers["X-Business-Use-Case-Usage"] = (
            '{"1": [{"type": "ads_management", "call_count": 100, '
            f'"estimated_time_to_regain_access": {regain_minutes}}}]}}'
        )
    error = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "is_transient": transient,
        "fbtrace_id": fbtrace_id,
    }
    return status, {"error": error}, headers


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request: latency only ("none"), or a fault of `kind`; with
    `after_accept`, the fault strikes the answer of a request accepted and stored."""

    kind: FaultKind
    latency_s: float = 0.0
    code: int = 0
    timeout_s: float = 0.0
    regain_minutes: int = 0
    after_accept: bool = False

    @property
    def name(self) -> str:
        """How the sandbox's stats count it: "503", "timeout", "lost_reset", ..."""
        name = str(self.code) if self.kind in ("status", "graph") else self.kind
        return f"lost_{name}" if self.after_accept else name


@dataclass(slots=True)
class FaultPlan:
    """The faults the sandbox injects, per dataset or for all; replaced at run time through
    `/_sandbox/faults`, drawn per request."""

    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int | None = None
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def replace(self, rules: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            self.rules = rules

    def draw(self, dataset_id: str) -> Fault:
        with self._lock:
            rule = self.rules.get(dataset_id) or self.rules.get("*")
            if not rule:
                return Fault("none")
            roll = self._rng.random()
        latency = float(rule.get("latency_ms", 0)) / 1000
        for code, share in rule.get("errors", {}).items():
            if roll < share:
                code = int(code)
                kind: FaultKind = "status" if code >= 500 and code not in _GRAPH_ERRORS else "graph"
                return Fault(kind, latency, code, regain_minutes=int(rule.get("regain_minutes", 0)))
            roll -= share
        if roll < rule.get("timeout_rate", 0):
            return Fault("timeout", latency, timeout_s=float(rule.get("timeout_s", 30)))
        roll -= rule.get("timeout_rate", 0)
        if roll < rule.get("drop_rate", 0):
            return Fault("drop", latency)
        roll -= rule.get("drop_rate", 0)
        for how, share in rule.get("lost_answers", {}).items():
            if roll < share:
                return _lost_answer(how, latency, float(rule.get("timeout_s", 30)))
            roll -= share
        return Fault("none", latency)


def _lost_answer(how: str, latency_s: float, timeout_s: float) -> Fault:
    """The fault that loses the answer of an accepted request: `how` is "reset", "timeout",
    "no_events_received" or an HTTP status of 500 and up."""
    kind = _LOST_ANSWER_KINDS.get(how)
    if kind is None:
        return Fault("status", latency_s, int(how), after_accept=True)
    return Fault(kind, latency_s, timeout_s=timeout_s, after_accept=True)
