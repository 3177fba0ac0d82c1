"""SubaccountStore: the rules, allowlists, suppression list and last-inbound times of subaccounts, in Redis.

Everything a rule check needs about one message is read in one pipelined round trip (``context``), so the
check at intake and the re-check at send time both see the operator's latest change.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from sendq import keys
from sendq.channel import Channel
from sendq.message import Message, from_ms, to_ms
from sendq.replies import aw, text
from sendq.subaccount import SubaccountRules

log = structlog.get_logger("sendq.subaccounts")

#: Sets the last-inbound time only if it moves forward: receipts and webhooks arrive out of order.
_RECORD_INBOUND = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""


class Suppression(BaseModel):
    """Why a contact is on a subaccount's suppression list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    contact: str
    channel: Channel
    #: e.g. ``operator``, ``hard_bounce``, ``complaint``, ``opt_out``
    reason: str
    at: datetime
    #: who or what added it: an operator's name, or ``receipt:<provider>``
    source: str | None = None
    #: the message whose receipt caused it, when a receipt did
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What the rules need to know about one (subaccount, channel, contact) at one moment."""

    rules: SubaccountRules
    allowed_terms: frozenset[str]
    allowed_domains: frozenset[str]
    suppressed: Suppression | None
    last_inbound: datetime | None


class SubaccountStore:
    """Subaccount data under ``sendq:sub:{id}:`` keys. Callers pass canonical contacts and normalised terms."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._record_inbound = redis.register_script(_RECORD_INBOUND)
        self._loaded = False

    async def rules(self, subaccount: str) -> SubaccountRules:
        raw = await self.redis.get(keys.subaccount_rules(subaccount))
        return SubaccountRules() if raw is None else SubaccountRules.model_validate_json(raw)

    async def set_rules(self, subaccount: str, rules: SubaccountRules) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.subaccount_rules(subaccount), rules.model_dump_json())
            pipe.sadd(keys.SUBACCOUNTS, subaccount)
            await pipe.execute()

    async def allow(self, subaccount: str, *, term: str | None = None, domain: str | None = None) -> bool:
        """Enable a restricted term or a link domain for the subaccount; False if it already was."""
        key, value = self._allow_key(subaccount, term, domain)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(key, value)
            pipe.sadd(keys.SUBACCOUNTS, subaccount)
            added, _ = await pipe.execute()
        return bool(added)

    async def revoke(self, subaccount: str, *, term: str | None = None, domain: str | None = None) -> bool:
        """Take back an enabled term or domain; False if it was not enabled."""
        key, value = self._allow_key(subaccount, term, domain)
        return bool(await aw(self.redis.srem(key, value)))

    @staticmethod
    def _allow_key(subaccount: str, term: str | None, domain: str | None) -> tuple[str, str]:
        if (term is None) == (domain is None):
            raise ValueError("exactly one of term or domain")
        if term is not None:
            return keys.allowed_terms(subaccount), term
        assert domain is not None
        return keys.allowed_domains(subaccount), domain

    async def allowlists(self, subaccount: str) -> tuple[frozenset[str], frozenset[str]]:
        """(terms, domains) enabled for the subaccount."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(keys.allowed_terms(subaccount))
            pipe.smembers(keys.allowed_domains(subaccount))
            terms, domains = await pipe.execute()
        return frozenset(map(text, terms)), frozenset(map(text, domains))

    async def suppress(self, subaccount: str, entry: Suppression) -> bool:
        """Put a contact on the suppression list (operators now; bounce, complaint and opt-out receipts later).

        Returns False when it was already there; the first entry (its reason and source) is kept.
        """
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(keys.suppression(subaccount, entry.channel), entry.contact, entry.model_dump_json())
            pipe.sadd(keys.SUBACCOUNTS, subaccount)
            added, _ = await pipe.execute()
        return bool(added)

    async def suppress_recipient(
        self, message: Message, *, reason: str | None, source: str, code: str | None, at: datetime
    ) -> bool:
        """Suppress ``message``'s recipient because of what a provider said about the message (an opt-out or
        block code, in a receipt or in the answer to a send). False when it was already suppressed."""
        entry = Suppression(
            contact=message.to,
            channel=message.channel,
            reason=reason or "blocked",
            at=at,
            source=source + (f" code {code}" if code else ""),
            message_id=message.id,
        )
        added = await self.suppress(message.subaccount, entry)
        if added:
            log.info("contact.suppressed", message_id=message.id, reason=entry.reason, source=entry.source)
        return added

    async def unsuppress(self, subaccount: str, channel: Channel, contact: str) -> bool:
        return bool(await aw(self.redis.hdel(keys.suppression(subaccount, channel), contact)))

    async def suppressed(self, subaccount: str, channel: Channel, contact: str) -> Suppression | None:
        raw = await aw(self.redis.hget(keys.suppression(subaccount, channel), contact))
        return None if raw is None else Suppression.model_validate_json(raw)

    async def suppression_list(self, subaccount: str, channel: Channel) -> list[Suppression]:
        raw = await aw(self.redis.hgetall(keys.suppression(subaccount, channel)))
        entries = [Suppression.model_validate_json(v) for v in raw.values()]
        return sorted(entries, key=lambda e: (e.at, e.contact))

    async def record_inbound(self, subaccount: str, contact: str, at: datetime) -> bool:
        """The contact wrote to the subaccount at ``at``; only a later time than the stored one is kept."""
        if not self._loaded:  # see MessageStore._load_scripts: the dev server drops the connection on NOSCRIPT
            await self.redis.script_load(_RECORD_INBOUND)
            self._loaded = True
        return bool(
            await self._record_inbound(
                keys=[keys.last_inbound(subaccount), keys.SUBACCOUNTS], args=[contact, to_ms(at), subaccount]
            )
        )

    async def last_inbound(self, subaccount: str, contact: str) -> datetime | None:
        raw = await aw(self.redis.hget(keys.last_inbound(subaccount), contact))
        return None if raw is None else from_ms(text(raw))

    async def subaccounts(self) -> list[str]:
        return sorted(map(text, await aw(self.redis.smembers(keys.SUBACCOUNTS))))

    async def contexts(self, subaccount: str, targets: Sequence[tuple[Channel, str]]) -> list[RuleContext]:
        """``context`` for many (channel, contact) pairs of one subaccount in one round trip (bulk intake):
        the rules and allowlists are read once, and the contacts with one HMGET per hash (not one HGET each)."""
        by_channel: dict[Channel, list[int]] = {}
        for i, (channel, _) in enumerate(targets):
            by_channel.setdefault(channel, []).append(i)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.subaccount_rules(subaccount))
            pipe.smembers(keys.allowed_terms(subaccount))
            pipe.smembers(keys.allowed_domains(subaccount))
            if targets:
                pipe.hmget(keys.last_inbound(subaccount), [contact for _, contact in targets])
            for channel, where in by_channel.items():
                pipe.hmget(keys.suppression(subaccount, channel), [targets[i][1] for i in where])
            replies = await pipe.execute()
        rules_raw, terms, domains = replies[:3]
        inbound = replies[3] if targets else []
        suppressed: list[bytes | None] = [None] * len(targets)
        for where, found in zip(by_channel.values(), replies[4:], strict=True):
            for i, raw in zip(where, found, strict=True):
                suppressed[i] = raw
        rules = SubaccountRules() if rules_raw is None else SubaccountRules.model_validate_json(rules_raw)
        allowed_terms, allowed_domains = frozenset(map(text, terms)), frozenset(map(text, domains))
        # Most contacts are neither suppressed nor have written in: they share one context (it is frozen).
        plain = RuleContext(rules, allowed_terms, allowed_domains, suppressed=None, last_inbound=None)
        return [
            plain
            if s is None and t is None
            else RuleContext(
                rules=rules,
                allowed_terms=allowed_terms,
                allowed_domains=allowed_domains,
                suppressed=None if s is None else Suppression.model_validate_json(s),
                last_inbound=None if t is None else from_ms(text(t)),
            )
            for s, t in zip(suppressed, inbound, strict=True)
        ]

    async def context(self, subaccount: str, channel: Channel, contact: str) -> RuleContext:
        """Everything the rules need for one message, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.subaccount_rules(subaccount))
            pipe.smembers(keys.allowed_terms(subaccount))
            pipe.smembers(keys.allowed_domains(subaccount))
            pipe.hget(keys.suppression(subaccount, channel), contact)
            pipe.hget(keys.last_inbound(subaccount), contact)
            rules, terms, domains, suppressed, inbound = await pipe.execute()
        return RuleContext(
            rules=SubaccountRules() if rules is None else SubaccountRules.model_validate_json(rules),
            allowed_terms=frozenset(map(text, terms)),
            allowed_domains=frozenset(map(text, domains)),
            suppressed=None if suppressed is None else Suppression.model_validate_json(suppressed),
            last_inbound=None if inbound is None else from_ms(text(inbound)),
        )
