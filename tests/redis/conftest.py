from tests.support.redis_fixtures import redis_server  # noqa: F401  (the fixture)
