from tests._redis_fixtures import redis_server  # noqa: F401  (the fixture)
