"""Shared fixtures. Kafka is always a real broker, in this order of preference:

1. an existing cluster named by `CAPI_TEST_KAFKA_BOOTSTRAP`;
2. testcontainers' Kafka module when a Docker engine answers;
3. the embedded Tansu broker (what CI here uses).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from consumer.kafka.topics import ensure_topics, topic_plan
from consumer.settings import Topics
from consumer.tools.embedded_broker import EmbeddedBroker


def _docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    existing = os.environ.get("CAPI_TEST_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    """Fresh topic names for one test, created on the broker."""
    suffix = uuid.uuid4().hex[:10]
    names = Topics(
        triggered=f"triggered-{suffix}",
        contacts=f"contacts-{suffix}",
        referrals=f"referrals-{suffix}",
        connections=f"connections-{suffix}",
        results=f"results-{suffix}",
        dlq=f"dlq-{suffix}",
        retry=f"retry-{suffix}",
        signals=f"signals-{suffix}",
    )
    ensure_topics({"bootstrap.servers": kafka_bootstrap}, topic_plan(names, 3))
    return names


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `long` first: with workers in parallel (`make test`), the others run
    beside them instead of after them."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
