"""API keys of the HTTP API: ``Authorization: Bearer sq_<id>_<secret>``.

An application key belongs to one subaccount and sees only its data; an operator key acts for ops and for
subaccount rules, on one subaccount or (with no subaccount) on all of them. Keys are created with
``sendq keys create``; the token is shown once and only a hash of its secret part is stored.

Redis layout (all under ``sendq:apikey``; nothing here is ever deleted, so a revoked key stays listed):

- hash ``sendq:apikey:{id}``: ``record`` (the ``ApiKey`` JSON as created), ``secret`` (SHA-256 hex of the
  secret part, removed on revocation) and ``revoked_at`` (ISO time, set once by revocation);
- zset ``sendq:apikeys``: key ids scored by creation time in ms, for listing.
"""

import builtins
import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Annotated, Final, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from redis.asyncio import Redis

from sendq.message import SubaccountId, to_ms, utcnow
from sendq.replies import aw, text

#: zset: API key ids by creation time in ms
APIKEYS: Final = "sendq:apikeys"
#: what every token starts with, so a leaked one is recognisable (secret scanners, logs)
TOKEN_PREFIX: Final = "sq_"
#: RFC 4648 base32 in lower case: no "_" (the token separator) and nothing to escape in a key name
ID_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
ID_LENGTH: Final = 12
#: random bytes in the secret part (43 characters of URL-safe base64)
SECRET_BYTES: Final = 32
LABEL_MAX: Final = 100

_ID = re.compile(rf"[{ID_ALPHABET}]{{{ID_LENGTH}}}")
# The secret's length is a range, not exactly 43, so a later change of SECRET_BYTES keeps older tokens valid.
_TOKEN = re.compile(rf"{TOKEN_PREFIX}([{ID_ALPHABET}]{{{ID_LENGTH}}})_([A-Za-z0-9_-]{{43,128}})")
#: longer than any token _TOKEN accepts: junk this long is refused before the regex even looks at it
_TOKEN_MAX = len(TOKEN_PREFIX) + ID_LENGTH + 1 + 128

_SUBACCOUNT: TypeAdapter[str] = TypeAdapter(SubaccountId)

#: Creates the key unless its id is taken (60 random bits make that unlikely, but it must not overwrite).
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'secret', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

#: Revokes once: the first revocation time is kept, and the secret hash goes so nothing can match it again.
_REVOKE = """
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'revoked_at', ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], 'secret')
return 1
"""


def apikey(key_id: str) -> str:
    """hash: one API key's record, secret hash and revocation time"""
    return f"sendq:apikey:{key_id}"


def _hash(secret: str) -> str:
    # The secret is 256 random bits, so a fast hash is enough: a slow KDF (bcrypt, scrypt) only helps against
    # guessing low-entropy passwords, and it would cost every request of the HTTP API.
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now


def valid_id(key_id: str) -> bool:
    """Whether ``key_id`` has the form of an API key id (it may still be unknown)."""
    return isinstance(key_id, str) and _ID.fullmatch(key_id) is not None


class ApiKey(BaseModel):
    """An API key as stored and listed; the secret is never part of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: public id, also inside the token and shown in lists
    id: Annotated[str, StringConstraints(pattern=rf"^[{ID_ALPHABET}]{{{ID_LENGTH}}}$")]
    #: None only for an operator key that may act on every subaccount
    subaccount: SubaccountId | None
    operator: bool
    label: Annotated[str, StringConstraints(min_length=1, max_length=LABEL_MAX)] | None = None
    created_at: AwareDatetime
    revoked_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _scoped(self) -> Self:
        if self.subaccount is None and not self.operator:
            raise ValueError("an application key belongs to a subaccount")
        return self

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def can_access(self, subaccount: str) -> bool:
        """Whether the key may see and act on ``subaccount``'s data (revocation is checked at authentication)."""
        if self.subaccount is None:
            return self.operator
        return self.subaccount == subaccount


def _record(raw_record: bytes | str, raw_revoked: bytes | str | None) -> ApiKey:
    key = ApiKey.model_validate_json(raw_record)
    if raw_revoked is None:
        return key
    return key.model_copy(update={"revoked_at": datetime.fromisoformat(text(raw_revoked))})


class ApiKeyStore:
    """API keys under ``sendq:apikey:{id}``. Every call reads Redis, so a revocation applies at once."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._create = redis.register_script(_CREATE)
        self._revoke = redis.register_script(_REVOKE)
        self._loaded = False

    async def _load_scripts(self) -> None:
        # Load before the first EVALSHA: the embedded server of `sendq dev` closes the connection on any error
        # reply, so the NOSCRIPT fallback would fail the first call (see MessageStore._load_scripts).
        if not self._loaded:
            for script in (self._create, self._revoke):
                await self.redis.script_load(script.script)
            self._loaded = True

    async def create(
        self, *, subaccount: str | None, operator: bool, label: str | None = None, now: datetime | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and its token. The token is not stored: this is the only time it exists.

        Raises ValueError for an application key without a subaccount, a bad subaccount id or a bad label.
        """
        created_at = _aware(now)
        if subaccount is not None:
            try:
                subaccount = _SUBACCOUNT.validate_python(subaccount)
            except ValidationError:
                raise ValueError(
                    f"{subaccount!r} is not a subaccount id (a letter or digit, then letters, digits, '_', '.', '-';"
                    " up to 64)"
                ) from None
        elif not operator:
            raise ValueError("an application key needs a subaccount (only an operator key may cover all of them)")
        if label is not None:
            label = label.strip() or None
        if label is not None and (len(label) > LABEL_MAX or not label.isprintable()):
            # Labels are printed in one row of `sendq keys list`: no newlines or other control characters.
            raise ValueError(f"a label is up to {LABEL_MAX} printable characters")
        await self._load_scripts()
        while True:
            key_id = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
            secret = secrets.token_urlsafe(SECRET_BYTES)
            key = ApiKey(id=key_id, subaccount=subaccount, operator=operator, label=label, created_at=created_at)
            created = await self._create(
                keys=[apikey(key_id), APIKEYS], args=[key.model_dump_json(), _hash(secret), to_ms(created_at), key_id]
            )
            if created:
                return key, f"{TOKEN_PREFIX}{key_id}_{secret}"

    async def authenticate(self, token: str) -> ApiKey | None:
        """The active key a token belongs to; None for a malformed, unknown or revoked token. Never raises on
        what the caller sent (Redis errors do propagate: they are not the caller's fault)."""
        if not isinstance(token, str) or len(token) > _TOKEN_MAX:
            return None
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        key_id, secret = match.groups()
        record, stored, revoked = await aw(self.redis.hmget(apikey(key_id), ["record", "secret", "revoked_at"]))
        # An unknown id answers a little faster than a wrong secret; ids are public, so that tells nothing.
        if record is None or stored is None or revoked is not None:
            return None
        if not hmac.compare_digest(_hash(secret).encode(), stored):
            return None
        return _record(record, None)

    async def revoke(self, key_id: str, *, now: datetime | None = None) -> bool:
        """Revoke a key for good; False if there is no such key or it was already revoked."""
        revoked_at = _aware(now)
        if not valid_id(key_id):
            return False
        await self._load_scripts()
        return bool(await self._revoke(keys=[apikey(key_id)], args=[revoked_at.isoformat()]))

    async def get(self, key_id: str) -> ApiKey | None:
        if not valid_id(key_id):  # nor does a junk id get to build a key name
            return None
        record, revoked = await aw(self.redis.hmget(apikey(key_id), ["record", "revoked_at"]))
        return None if record is None else _record(record, revoked)

    # `builtins.list` below: inside the class body, `list` is this method.
    async def list(self, subaccount: str | None = None) -> builtins.list[ApiKey]:
        """Keys newest first, revoked ones included; only those of ``subaccount`` when given (an operator key
        for every subaccount has no subaccount, so it is listed only without a filter)."""
        ids = [text(i) for i in await aw(self.redis.zrevrange(APIKEYS, 0, -1))]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hmget(apikey(key_id), ["record", "revoked_at"])
            rows = await pipe.execute()
        found = [_record(record, revoked) for record, revoked in rows if record is not None]
        # The zset score is in ms and Redis orders ties by id; the record's microseconds order them properly.
        found.sort(key=lambda k: k.created_at, reverse=True)
        return [k for k in found if subaccount is None or k.subaccount == subaccount]
