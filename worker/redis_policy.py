"""Refuse to run on a Redis that may evict keys: an evicted job or record is a silently lost message."""

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from sendq.errors import ConfigurationError

#: the only maxmemory-policy under which Redis never drops a key on its own
SAFE_POLICY = "noeviction"
#: Redis keeps a hash compact (a listpack) only while every value is at most ``hash-max-listpack-value`` bytes
#: (default 64). A message record with a longer body, address or template variables then takes a hash table:
#: about 970 bytes instead of about 310 for a record with a 124-character body. 4096 covers a WhatsApp text.
RECOMMENDED_LISTPACK_VALUE = 4096


async def check_redis_policy(redis: Redis) -> dict[str, str]:
    """Read ``INFO memory`` / ``INFO persistence`` (works where CONFIG is disabled, as on managed Redis).

    Raises:
        ConfigurationError: the eviction policy is not ``noeviction``.
    """
    memory = await redis.info("memory")
    policy = str(memory.get("maxmemory_policy", ""))
    if policy != SAFE_POLICY:
        raise ConfigurationError(
            f"Redis maxmemory-policy is {policy!r}; sendq needs 'noeviction' (an evicted key is a lost message). "
            "Set it with: CONFIG SET maxmemory-policy noeviction"
        )
    persistence = await redis.info("persistence")
    return {"maxmemory_policy": policy, "aof_enabled": str(persistence.get("aof_enabled", "?"))}


async def listpack_advice(redis: Redis) -> str | None:
    """A warning when Redis stores message records with longer values as hash tables (about three times the
    memory of a compact hash); None when it does not, or when CONFIG is not available (managed Redis)."""
    try:
        reply = await redis.config_get("hash-max-listpack-value")
    except ResponseError:
        return None
    value = next(iter(reply.values()), None) if reply else None
    if value is None or int(value) >= RECOMMENDED_LISTPACK_VALUE:
        return None
    return (
        f"Redis hash-max-listpack-value is {int(value)}: a message whose body is longer than that takes about three "
        f"times the memory. Set it with: CONFIG SET hash-max-listpack-value {RECOMMENDED_LISTPACK_VALUE} "
        "(and in redis.conf)"
    )
