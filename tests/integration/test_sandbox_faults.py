"""The sandbox process: faults set at run time over HTTP, counted, and forgotten on reset."""

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


def _post(url, dataset):
    body = {"access_token": TOKEN, "data": [{**EVENT, "event_time": int(time.time())}]}
    return httpx.post(f"{url}/v24.0/{dataset}/events", json=body, timeout=5)


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
        }
