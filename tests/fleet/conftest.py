from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_support import REDIS

from vastcap_guard.sandbox import LocalRedis


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real, throwaway redis-server on loopback."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs Debian's redis-server)")
    with LocalRedis(str(tmp_path)) as redis:
        yield redis.url
