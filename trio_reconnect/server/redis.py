"""The Redis backends of the server: the shared event log, channel store and cluster registry.

Needs the ``redis`` extra (``pip install trio-reconnect[redis]``, which
brings coredis). Kept out of :mod:`trio_reconnect.server` so that importing
the server never imports coredis; import from here::

    from trio_reconnect.server.redis import RedisChannelStore, RedisRegistry, RedisStreamLog

How to run a node on Redis: docs/howto/redis.md.
"""

from ._redis._channel_plan import DEFAULT_CHANNEL_PREFIX as DEFAULT_CHANNEL_PREFIX
from ._redis._channels import DEFAULT_MAX_APPEND_BATCH as DEFAULT_MAX_APPEND_BATCH
from ._redis._channels import DEFAULT_NOTIFY_PING_INTERVAL as DEFAULT_NOTIFY_PING_INTERVAL
from ._redis._channels import DEFAULT_NOTIFY_SHARDS as DEFAULT_NOTIFY_SHARDS
from ._redis._channels import DEFAULT_READ_BUDGET as DEFAULT_READ_BUDGET
from ._redis._channels import RedisChannelStore as RedisChannelStore
from ._redis._continuity import MAX_REDIS_ID as MAX_REDIS_ID
from ._redis._log import DEFAULT_MAX_LEN as DEFAULT_MAX_LEN
from ._redis._log import DEFAULT_READ_BLOCK as DEFAULT_READ_BLOCK
from ._redis._log import DEFAULT_STREAM as DEFAULT_STREAM
from ._redis._log import RedisStreamLog as RedisStreamLog
from ._redis._registry import DEFAULT_REGISTRY_PREFIX as DEFAULT_REGISTRY_PREFIX
from ._redis._registry import RedisRegistry as RedisRegistry
from ._redis._store import DEFAULT_MAX_CONNECTIONS as DEFAULT_MAX_CONNECTIONS
from ._redis._store import DEFAULT_MAX_IN_FLIGHT as DEFAULT_MAX_IN_FLIGHT
from ._redis._store import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT

__all__ = [
    "DEFAULT_CHANNEL_PREFIX",
    "DEFAULT_MAX_APPEND_BATCH",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_LEN",
    "DEFAULT_NOTIFY_PING_INTERVAL",
    "DEFAULT_NOTIFY_SHARDS",
    "DEFAULT_READ_BUDGET",
    "DEFAULT_READ_BLOCK",
    "DEFAULT_REGISTRY_PREFIX",
    "DEFAULT_STREAM",
    "DEFAULT_TIMEOUT",
    "MAX_REDIS_ID",
    "RedisChannelStore",
    "RedisRegistry",
    "RedisStreamLog",
]
