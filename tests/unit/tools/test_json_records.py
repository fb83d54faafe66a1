"""The records a person writes for `produce --json` and `seed`, checked against the schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from consumer.kafka.codec import SchemaStore
from consumer.tools.json_records import check_record

CONTRACT = Path(__file__).resolve().parents[3] / "docs" / "contract.md"


def _example_trigger() -> dict[str, object]:
    text = CONTRACT.read_text(encoding="utf-8")
    block = re.search(r"A complete trigger.*?```json\n(.*?)```", text, re.S)
    assert block, "docs/contract.md has no example trigger"
    trigger: dict[str, object] = json.loads(block[1])
    return trigger


def test_the_contracts_example_trigger_is_accepted_as_written():
    record = check_record(SchemaStore(), "ConversionTriggered", _example_trigger())
    assert (record["channel"], record["event_type"]) == ("WHATSAPP", "PURCHASE")
    assert record["occurred_at"] == 1796465700000  # 2026-12-05T10:15:00Z
    assert record["selected_page_id"] is None  # left out: null


@pytest.mark.parametrize("typed", ["messenger", "Messenger", "MESSENGER"])
def test_enum_values_are_taken_in_any_case_and_written_in_the_schemas(typed):
    trigger = {**_example_trigger(), "channel": typed}
    assert check_record(SchemaStore(), "ConversionTriggered", trigger)["channel"] == "MESSENGER"


def test_an_enum_value_that_is_none_of_them_names_the_choices():
    trigger = {**_example_trigger(), "channel": "telegram"}
    with pytest.raises(ValueError, match='channel: "telegram" is not one of WHATSAPP, MESSENGER'):
        check_record(SchemaStore(), "ConversionTriggered", trigger)
