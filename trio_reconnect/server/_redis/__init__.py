"""The event log, channel store and cluster registry on Redis (coredis, under trio).

Needs the ``redis`` extra.

Imported only by :mod:`trio_reconnect.server.redis`, so that ``import
trio_reconnect.server`` never imports coredis.

===================  ==========================================================
``_scripts``         the Lua scripts (append, read, state, announce, nodes)
``_continuity``      (pure) ids in and out; when a read is whole, a tail follows on
``_store``           the client owners, their turns, running one command
``_log``             :class:`~trio_reconnect.server.redis.RedisStreamLog`
``_registry``        :class:`~trio_reconnect.server.redis.RedisRegistry`
``_channel_plan``    (pure) channel keys, hash tags, shards, notifications, replies
``_channel_scripts`` the channel store's Lua scripts (read many, append + notify, heads)
``_resp``            (pure) a RESP2 encoder and incremental parser
``_notify``          the live notification stream on a socket of its own
``_channels``        :class:`~trio_reconnect.server.redis.RedisChannelStore`
===================  ==========================================================

The log's keys are plain (``stream``, ``stream:meta``, and the registry's keys
built inside a script), so the log is for a standalone Redis (with replicas or
Sentinel if you like), not Redis Cluster. The channel store's keys carry a
hash tag per channel (docs/explanation/channels-redis.md).
"""

from ._continuity import MAX_REDIS_ID as MAX_REDIS_ID
from ._log import DEFAULT_MAX_LEN as DEFAULT_MAX_LEN
from ._log import DEFAULT_READ_BLOCK as DEFAULT_READ_BLOCK
from ._log import DEFAULT_STREAM as DEFAULT_STREAM
from ._log import RedisStreamLog as RedisStreamLog
from ._registry import DEFAULT_REGISTRY_PREFIX as DEFAULT_REGISTRY_PREFIX
from ._registry import RedisRegistry as RedisRegistry
from ._store import DEFAULT_MAX_CONNECTIONS as DEFAULT_MAX_CONNECTIONS
from ._store import DEFAULT_MAX_IN_FLIGHT as DEFAULT_MAX_IN_FLIGHT
from ._store import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_LEN",
    "DEFAULT_READ_BLOCK",
    "DEFAULT_REGISTRY_PREFIX",
    "DEFAULT_STREAM",
    "DEFAULT_TIMEOUT",
    "MAX_REDIS_ID",
    "RedisRegistry",
    "RedisStreamLog",
]
