"""The Firestore sources registry on the emulator holds the registry's contract (the services'
fake holds it too: tests/unit/services/test_source_registry_fake.py)."""

from __future__ import annotations

import pytest

from shared.gcp.source_registry import SourceRegistry
from tests.fakes import FakeClock
from tests.source_registry_contract import RegistryContract

pytestmark = pytest.mark.integration


class TestFirestoreSourceRegistry(RegistryContract):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def registry(self, firestore_db, clock: FakeClock) -> SourceRegistry:
        return SourceRegistry(firestore_db, clock)
