from collections.abc import Iterator

import pytest

from tests.chaos.harness import kill_leftovers


@pytest.fixture(autouse=True)
def _no_service_outlives_its_test() -> Iterator[None]:
    yield
    kill_leftovers()
