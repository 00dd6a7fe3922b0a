"""The services' fake sources registry holds the registry's contract (the Firestore store
holds it too: tests/integration/gcp/test_source_registry.py)."""

from __future__ import annotations

import pytest

from tests.fakes import FakeClock
from tests.source_registry_contract import RegistryContract
from tests.unit.services.fakes import FakeSourceRegistry


class TestFakeSourceRegistry(RegistryContract):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def registry(self, clock: FakeClock) -> FakeSourceRegistry:
        return FakeSourceRegistry(clock)
