from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest


@pytest.fixture
def place() -> tuple[float, float, datetime]:
    """A random spot in Thái Nguyên and a random moment, so tests never link to each other."""
    rng = random.Random(uuid.uuid4().int)
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(0, 24 * 300))
    return 21.4 + rng.random() * 0.4, 105.6 + rng.random() * 0.4, moment
