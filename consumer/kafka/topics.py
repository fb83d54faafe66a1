"""The service's topics: what each needs, and the one function that creates them.

`topic_plan` is the plan `capi-consumer topics create`, the demo, the tests and the compose file
follow: the results, retry and signals topics with at least the input's partitions (results,
parked events and signal counts go to the partition numbered like their input), the results
kept a week (the dedup window, Meta's 7 days), the retry and signals topics and the reference
tables compacted (the latest record of each key counts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from consumer.errors import CapiConsumerError
from consumer.settings import Topics

__all__ = ["COMPACT", "WEEK_MS", "TopicSpec", "create_topics", "ensure_topics", "topic_plan"]

WEEK_MS = 7 * 24 * 3600 * 1000
COMPACT: Mapping[str, str] = {"cleanup.policy": "compact"}
_HOUR_MS = 3600 * 1000
# the signals topic gets a new value of a key with every transaction that counts for it: its
# segments roll and are compacted within the hour, so that a reader finds about one record a
# key, not one a commit (the broker never compacts the segment being written)
SIGNALS_COMPACTION: Mapping[str, str] = {
    **COMPACT,
    "segment.ms": str(_HOUR_MS),
    "max.compaction.lag.ms": str(_HOUR_MS),
    "min.cleanable.dirty.ratio": "0.1",
}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: its name, partitions and configuration."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)

    @property
    def compacted(self) -> bool:
        return "compact" in self.config.get("cleanup.policy", "")


def topic_plan(
    topics: Topics, partitions: int, results_partitions: int | None = None
) -> list[TopicSpec]:
    """Every topic of the service; `results_partitions` for the results and retry topics
    (default `partitions`, never fewer than the input's)."""
    paired = results_partitions or partitions
    return [
        TopicSpec(topics.triggered, partitions),
        TopicSpec(topics.results, paired, {"retention.ms": str(WEEK_MS)}),
        TopicSpec(topics.dlq, partitions),
        # parked events: partition p holds input partition p's; compacted, the latest record
        # of each event_id counts, and stays until a tombstone ends its parking
        TopicSpec(topics.retry, paired, COMPACT),
        # signal counts: partition p holds input partition p's, the latest record of each
        # (partition, dataset, event name, day) counts
        TopicSpec(topics.signals, paired, SIGNALS_COMPACTION),
        *(
            TopicSpec(name, partitions, COMPACT)
            for name in (topics.connections, topics.contacts, topics.referrals)
        ),
    ]


def create_topics(
    admin_config: Mapping[str, Any], specs: Iterable[TopicSpec], timeout_s: float = 30.0
) -> dict[str, str | None]:
    """Create `specs` (one that exists stays as it is); each name -> None when it exists now,
    else why it could not be created."""
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, config=dict(s.config))
        for s in specs
    ]
    if not new:
        return {}
    admin = AdminClient(dict(admin_config))
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    return {name: _failure(future) for name, future in futures.items()}


def ensure_topics(admin_config: Mapping[str, Any], specs: Iterable[TopicSpec]) -> None:
    """`create_topics`, raising `CapiConsumerError` for the first that could not be."""
    for name, failure in create_topics(admin_config, specs).items():
        if failure is not None:
            raise CapiConsumerError(f"cannot create topic {name}: {failure}")


def _failure(future: Any) -> str | None:
    try:
        future.result()
    except KafkaException as exc:
        err = exc.args[0]
        return None if err.code() == KafkaError.TOPIC_ALREADY_EXISTS else str(err.str())
    return None
