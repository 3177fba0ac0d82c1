"""Refuse to run on a Redis that may evict keys: an evicted job or record is a silently lost message."""

from redis.asyncio import Redis

from sendq.errors import ConfigurationError

#: the only maxmemory-policy under which Redis never drops a key on its own
SAFE_POLICY = "noeviction"


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
