"""Calls made again while the broker does not answer, and only then."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer.kafka.broker_wait import Pauses, until_answered


def _failing(*errors: KafkaError):
    left = list(errors)

    def call() -> str:
        if left:
            raise KafkaException(left.pop(0))
        return "answer"

    return call


def test_a_call_is_made_again_while_no_broker_answers_it(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr("consumer.kafka.broker_wait.time.sleep", slept.append)
    reports: list[str] = []
    away = [KafkaError(KafkaError._TIMED_OUT), KafkaError(KafkaError._TRANSPORT)] * 3
    assert until_answered(_failing(*away), "the broker", reports.append) == "answer"
    assert slept == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]  # growing, at most 5 s
    assert len(reports) == 6
    assert reports[0] == "the broker: Local: Timed out"


def test_an_answer_that_is_an_error_is_not_waited_for():
    reports: list[str] = []
    with pytest.raises(KafkaException):
        until_answered(
            _failing(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)),
            "the broker",
            reports.append,
        )
    assert reports == []


def test_pauses_report_before_they_sleep():
    events: list[str] = []
    pauses = Pauses(
        lambda what: events.append(f"report {what}"), sleep=lambda s: events.append(f"sleep {s}")
    )
    pauses.pause("x")
    assert events == ["report x", "sleep 0.5"]
