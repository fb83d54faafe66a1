"""`capi-consumer replay-dlq`: put dead letters back on the input topic.

Each dead letter keeps the original key and value; it is produced again to the input topic
with a `capi.replay` header (so an event whose earlier outcome was FAILED may be processed
again; one already SENT or SKIPPED stays a DUPLICATE) and `capi.replay.of` naming the dead
letter. The replay reads the dead-letter topic with a consumer group of its own (one per reason
filter) and commits what it read, so running the same replay twice does not replay the same
letters twice (`--from-beginning` starts over). Replaying a letter twice is harmless anyway: the
second copy finds the first one's outcome and is a DUPLICATE.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, Consumer, Producer, TopicPartition

from consumer.errors import CapiConsumerError
from consumer.events.results import REPLAY_HEADER
from consumer.settings import Settings
from consumer.tools.walkthrough import require_topics

__all__ = ["ReplayReport", "replay_dead_letters"]


@dataclass(slots=True)
class ReplayReport:
    """What `replay-dlq` read, replayed and left."""

    replayed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [f"replayed {sum(self.replayed.values())} dead letters to the input topic"]
        out += [f"  {reason:<26} {n:>7}" for reason, n in sorted(self.replayed.items())]
        if self.skipped:
            out.append(f"left {sum(self.skipped.values())} (other reasons)")
            out += [f"  {reason:<26} {n:>7}" for reason, n in sorted(self.skipped.items())]
        return out


def replay_dead_letters(
    settings: Settings,
    reasons: Iterable[str] = (),
    *,
    from_beginning: bool = False,
    dry_run: bool = False,
    idle_s: float = 3.0,
) -> ReplayReport:
    """Replay what the dead-letter topic holds; a broker that does not answer, a missing topic or
    an undelivered replay is a `CapiConsumerError` (nothing committed)."""
    wanted = {r.upper() for r in reasons}
    topics = settings.topics
    count = require_topics(settings, topics.dlq)[topics.dlq]
    # OFFSET_INVALID: where the group committed (else auto.offset.reset, the earliest)
    start = OFFSET_BEGINNING if from_beginning else OFFSET_INVALID
    consumer = Consumer(
        {
            **settings.kafka_config("consumer"),
            # one cursor per reason filter, so a replay by reason leaves the others waiting
            "group.id": "-".join([f"{settings.group_id}-dlq-replay", *sorted(wanted)]),
            "enable.auto.commit": "false",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    producer = Producer(
        {**settings.kafka_config("producer"), "enable.idempotence": "true", "acks": "all"}
    )
    report = ReplayReport()
    try:
        consumer.assign([TopicPartition(topics.dlq, p, start) for p in range(count)])
        last_message = time.monotonic()
        positions: dict[int, int] = {}
        while time.monotonic() - last_message < idle_s:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error() is not None:
                    continue
                last_message = time.monotonic()
                raw = dict(msg.headers() or []).get("capi.error") or b""
                error = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
                reason = error.split(":", 1)[0].strip() or "UNKNOWN"
                positions[msg.partition() or 0] = (msg.offset() or 0) + 1
                if wanted and reason not in wanted:
                    report.skipped[reason] += 1
                    continue
                report.replayed[reason] += 1
                if dry_run:
                    continue
                producer.produce(
                    topics.triggered,
                    key=msg.key(),
                    value=msg.value(),
                    headers=[
                        (REPLAY_HEADER, b"1"),
                        (
                            "capi.replay.of",
                            f"{topics.dlq}/{msg.partition()}/{msg.offset()}".encode(),
                        ),
                    ],
                )
                producer.poll(0)
        if not dry_run:
            if producer.flush(60) != 0:
                raise CapiConsumerError(
                    "replayed messages were not all delivered; nothing committed"
                )
            if positions:
                consumer.commit(
                    offsets=[TopicPartition(topics.dlq, p, o) for p, o in positions.items()],
                    asynchronous=False,
                )
    finally:
        consumer.close()
    return report
