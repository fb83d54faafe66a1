"""Every reason code of the contract says what to do; an unknown one gets the generic line."""

from consumer.events.results import Reason
from consumer.tools.signals.advice import REASON_ADVICE, UNKNOWN_REASON_ADVICE, advice_for


def test_every_reason_of_the_contract_has_its_own_advice():
    assert set(REASON_ADVICE) == set(Reason)
    lines = [advice_for(str(reason)) for reason in Reason]
    assert UNKNOWN_REASON_ADVICE not in lines
    assert len(set(lines)) == len(lines)


def test_the_examples_of_the_issue():
    assert "select the page or account" in advice_for("CHANNEL_NOT_SELECTED")
    assert "email or phone" in advice_for("NO_CUSTOMER_INFORMATION")
    assert advice_for("RESTRICTED_REGION").startswith("nothing")


def test_an_unknown_reason_gets_the_generic_line():
    assert advice_for("NOT_A_REASON") == UNKNOWN_REASON_ADVICE
