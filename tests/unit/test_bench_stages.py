"""`bench/stages.py`: py-spy's raw stacks sorted into the stages of an event's way."""

from __future__ import annotations

from pathlib import Path

from bench.stages import per_event_us, stage_samples

_TURN = "MainThread;run (consumer/tools/cli.py:60);Service.run (consumer/service/loop.py:99)"
LINES = [
    # the service built and settled in before the first event: not per event
    "MainThread;run_service (consumer/service/main.py:44);build_service (loop.py:160) 7",
    f"{_TURN};_settle_in (consumer/service/main.py:98);country_names (countries.py:97) 5",
    # a result's encoding under an answer is the result's, not the loop's
    f"{_TURN};Service.turn (loop.py:126);Answers.collect (answers.py:40);"
    "Checkpoint.answered (checkpoint.py:165);ResultBodyWriter.body (result_avro.py:171) 3",
    f"{_TURN};Service.turn (loop.py:120);Triage.batch (triage.py:154);"
    "Triage._decode (triage.py:270) 2",
    f"{_TURN};Service.turn (loop.py:118);Rebalance.consume (rebalance.py:153) 1",
    # the timed garbage collections, in a thread of their own
    "capi-gc;Thread.run (threading.py:975);collect_until (consumer/service/garbage.py:62) 4",
    "not a stack line",
]


def test_stacks_go_to_the_first_stage_one_of_their_frames_names():
    assert stage_samples(LINES) == {"start": 12, "result": 3, "decode": 2, "gc": 4, "loop": 1}


def test_the_start_is_left_out_of_the_microseconds_per_event(tmp_path: Path):
    profile = tmp_path / "profile.txt"
    profile.write_text("\n".join(LINES) + "\n")
    # 10 samples per event stage out of the run's 0.1 s per 1,000 events: 100 µs an event
    assert per_event_us(profile, 0.1) == {"decode": 20.0, "result": 30.0, "gc": 40.0, "loop": 10.0}
