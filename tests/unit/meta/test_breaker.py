"""The circuit breaker opens when Meta fails for everyone, not for one dataset."""

from consumer.meta.breaker import CircuitBreaker


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _breaker(clock, changes):
    return CircuitBreaker(
        failures_to_open=4, probe_min_s=5, probe_max_s=20, clock=clock, on_change=changes.append
    )


def test_one_failing_dataset_never_opens_it():
    changes: list[bool] = []
    breaker = _breaker(Clock(), changes)
    for _ in range(50):
        breaker.failed("ds-1", unreachable=False)
    assert not breaker.is_open
    assert changes == []


def test_failures_across_datasets_open_it_and_any_answer_closes_it():
    changes: list[bool] = []
    breaker = _breaker(Clock(), changes)
    for dataset in ("ds-1", "ds-2", "ds-1"):
        breaker.failed(dataset, unreachable=False)
    assert not breaker.is_open
    breaker.failed("ds-2", unreachable=False)
    assert breaker.is_open
    breaker.answered()  # a throttle or a rejection is an answer too: Meta is there
    assert not breaker.is_open
    assert changes == [True, False]


def test_an_answer_in_between_starts_the_count_again():
    breaker = _breaker(Clock(), [])
    for dataset in ("ds-1", "ds-2", "ds-1"):
        breaker.failed(dataset, unreachable=False)
    breaker.answered()
    for dataset in ("ds-1", "ds-2", "ds-1"):
        breaker.failed(dataset, unreachable=False)
    assert not breaker.is_open


def test_meta_out_of_reach_opens_it_for_a_single_dataset():
    breaker = _breaker(Clock(), [])
    for _ in range(4):
        breaker.failed("ds-1", unreachable=True)
    assert breaker.is_open


def test_probes_go_at_growing_intervals_while_open():
    clock = Clock()
    breaker = _breaker(clock, [])
    assert not breaker.probe_due()  # closed: no probes
    for _ in range(4):
        breaker.failed("ds-1", unreachable=True)
    probes = []
    while clock.now < 80:
        if breaker.probe_due():
            probes.append(clock.now)
        clock.now += 1
    assert probes == [5, 15, 35, 55, 75]  # 5 s, then twice as long each time, up to 20 s
