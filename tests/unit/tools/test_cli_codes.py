"""Codes a person types on the command line (channels, event types, reasons): any case in,
the schema's case out, and an error that lists them as they are written."""

from __future__ import annotations

import click
import pytest

from consumer.tools.cli import _CHANNELS, _EVENT_TYPES


@pytest.mark.parametrize("typed", ["messenger", "Messenger", "MESSENGER"])
def test_a_channel_in_any_case_is_the_schemas(typed):
    assert _CHANNELS.convert(typed, None, None) == "MESSENGER"


def test_an_event_type_in_lower_case_is_the_schemas():
    assert _EVENT_TYPES.convert("lead_submitted", None, None) == "LEAD_SUBMITTED"


def test_an_unknown_code_lists_them_as_written():
    with pytest.raises(click.BadParameter, match="'TELEGRAM' is not one of 'WHATSAPP'"):
        _CHANNELS.convert("telegram", None, None)
