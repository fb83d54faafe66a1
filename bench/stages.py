"""Where a drain's CPU goes, by stage: py-spy's raw stacks of the service sorted into the stages
of an event's way through it, and each stage's share turned into microseconds per event.

A stack counts for the first stage, in the order below, that one of its frames names: a
result's encoding under an answer counts as `result`, not as the loop that called it. Stacks of
the start (the tables caught up, modules imported, the service built, what the first events
would build made ahead) count for no stage: they are not per event, and the run's CPU figure
leaves them out too (it counts from the first result to the last).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

__all__ = ["STAGES", "per_event_us", "stage_samples"]

# stage -> the function names (py-spy's `Class.method` or `function`) that mark it
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "start",
        ("open_parts", "TableReader.bootstrap", "_find_and_load", "build_service", "_settle_in"),
    ),
    ("send", ("Sender._send", "Dispatcher.deliver", "CapiClient.send", "CapiClient.body")),
    ("result", ("Answers.collect", "Checkpoint.answered", "Checkpoint.resolve", "_result_held")),
    ("commit", ("Checkpoint.turn", "Checkpoint.commit", "Publisher.commit")),
    ("decode", ("Triage._decode", "AvroCodec._decode", "Trigger.from_avro")),
    ("payload", ("decide", "normalize_customer_info", "build_event")),
    ("triage", ("Triage.batch", "Triage.message", "Triage.parked")),
    ("gc", ("collect_until",)),
)
_FRAME = re.compile(r"^(.*?) \(")


def stage_samples(lines: Iterable[str]) -> Counter[str]:
    """Samples by stage (`loop` for what no stage names) of py-spy's raw output."""
    samples: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        names = {m[1] for f in stack.split(";") if (m := _FRAME.match(f))}
        stage = next((name for name, markers in STAGES if any(m in names for m in markers)), "loop")
        samples[stage] += int(count)
    return samples


def per_event_us(profile: Path, cpu_s_per_1000: float) -> dict[str, float]:
    """Each stage's CPU per event (µs), from the share of its samples in `profile`'s raw
    stacks and the run's CPU per 1,000 events; the start left out."""
    samples = stage_samples(profile.read_text().splitlines())
    samples.pop("start", None)
    total = sum(samples.values()) or 1
    order = [name for name, _ in STAGES if name != "start"] + ["loop"]
    return {
        name: round(samples[name] / total * cpu_s_per_1000 * 1000, 1)
        for name in order
        if samples[name]
    }
