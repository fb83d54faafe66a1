"""The signals topic as the command reads it: the whole topic to its end
(`consumer/store/signals_topic.py`), every failure one line naming what to do."""

from __future__ import annotations

from collections.abc import Callable

from consumer.settings import Settings
from consumer.store.signals_topic import SignalRecords, read_signals_topic
from consumer.tools.walkthrough import require_topics

__all__ = ["read_signals"]


def read_signals(settings: Settings, stopped: Callable[[], bool] = lambda: False) -> SignalRecords:
    """The signals topic (`settings.topics.signals`) read from its beginning to its end.

    A broker that does not answer, or a topic that does not exist, is a `CapiConsumerError`
    naming it (one line for the command).
    """
    topic = settings.topics.signals
    require_topics(settings, topic)
    # librdkafka's own lines silenced: the failure is told once, as one line
    config = {**settings.kafka_config("consumer"), "log_level": "0"}
    return read_signals_topic(config, topic, stopped=stopped)
