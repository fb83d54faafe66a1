"""The sandbox process: faults set at run time over HTTP, counted, and forgotten on reset;
faults that lose the answer of a request whose events were stored."""

import time

import httpx
import pytest

from consumer.tools.sandbox.process import SandboxProcess

TOKEN = "EAAB-fault-token"
EVENT = {
    "event_name": "LeadSubmitted",
    "action_source": "business_messaging",
    "messaging_channel": "whatsapp",
    "user_data": {"em": "a" * 64, "whatsapp_business_account_id": "waba-1"},
}


def _post(url, dataset, timeout=5.0):
    body = {"access_token": TOKEN, "data": [{**EVENT, "event_time": int(time.time())}]}
    return httpx.post(f"{url}/v24.0/{dataset}/events", json=body, timeout=timeout)


def test_faults_are_set_per_dataset_counted_and_reset():
    with SandboxProcess({"tokens": {TOKEN: {"datasets": "*"}}}) as sandbox:
        assert _post(sandbox.url, "ds-1").status_code == 200
        sandbox.set_faults({"ds-1": {"errors": {"190": 1.0}}, "ds-2": {"drop_rate": 1.0}})
        refused = _post(sandbox.url, "ds-1")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == 190
        with pytest.raises(httpx.RemoteProtocolError):
            _post(sandbox.url, "ds-2")
        assert _post(sandbox.url, "ds-3").status_code == 200  # other datasets are untouched
        stats = sandbox.stats()
        assert stats["faults"] == {"190": 1, "drop": 1}
        assert stats["accepted_events"] == 2
        sandbox.reset()
        assert sandbox.stats() == {
            "accepted_requests": 0,
            "rejected_requests": 0,
            "accepted_events": 0,
            "faults": {},
            "lost_answer_events": 0,
        }


def test_lost_answers_strike_after_the_events_are_stored():
    with SandboxProcess({"tokens": {TOKEN: {"datasets": "*"}}}) as sandbox:
        sandbox.set_faults(
            {
                "ds-reset": {"lost_answers": {"reset": 1.0}},
                "ds-timeout": {"lost_answers": {"timeout": 1.0}, "timeout_s": 2},
                "ds-503": {"lost_answers": {"503": 1.0}},
                "ds-count": {"lost_answers": {"no_events_received": 1.0}},
            }
        )
        with pytest.raises(httpx.ReadError):  # a TCP reset
            _post(sandbox.url, "ds-reset")
        with pytest.raises(httpx.ReadTimeout):
            _post(sandbox.url, "ds-timeout", timeout=0.5)
        assert _post(sandbox.url, "ds-503").status_code == 503
        uncounted = _post(sandbox.url, "ds-count")
        assert uncounted.status_code == 200
        assert "events_received" not in uncounted.json()
        # a request refused is answered as usual, its answer not lost
        refused = httpx.post(
            f"{sandbox.url}/v24.0/ds-reset/events", json={"access_token": "nope"}, timeout=5
        )
        assert refused.json()["error"]["code"] == 190
        stored = sorted(e["dataset_id"] for e in sandbox.events())
        assert stored == ["ds-503", "ds-count", "ds-reset", "ds-timeout"]
        stats = sandbox.stats()
        assert stats["faults"] == {
            "lost_reset": 1,
            "lost_timeout": 1,
            "lost_503": 1,
            "lost_no_events_received": 1,
        }
        assert stats["lost_answer_events"] == 4
