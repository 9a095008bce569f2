"""Fixtures every end-to-end test shares: the backend parameter and a fake upstream."""

from __future__ import annotations

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.harness import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each test that takes ``backend`` runs once per transport (trio, asyncio)."""
    return request.param


@pytest.fixture
def up():
    u = FakeUpstream()
    yield u
    u.close()
