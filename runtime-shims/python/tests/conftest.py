from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import Fixture, namespaces_available


@pytest.fixture
def fixture() -> Iterator[Fixture]:
    made = Fixture()
    yield made
    made.cleanup()


needs_namespaces = pytest.mark.skipif(
    not namespaces_available(), reason='needs unshare --net --mount (root or user namespaces)'
)
