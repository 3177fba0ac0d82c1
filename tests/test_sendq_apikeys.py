"""API keys: the store against a private redis-server, and ``sendq keys ...`` in process.

The store tests are async and use ``real_arq``; the CLI tests are sync because ``run`` starts its own event
loop (``asyncio.run``), like the ``sendq`` command does.
"""

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from arq.connections import ArqRedis
from hypothesis import HealthCheck, given, settings, strategies as st

from sendq import cli_keys
from sendq.apikeys import APIKEYS, ID_ALPHABET, ApiKey, ApiKeyStore, apikey
from sendq.cli import _Parser, _with_scheduler
from sendq.errors import InvalidInput
from sendq.replies import aw as _aw
from tests.conftest import RedisServer, make_settings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKEN_RE = re.compile(r"sq_[a-z2-7]{12}_[A-Za-z0-9_-]{43}")


async def test_create_and_authenticate_round_trip(real_arq: ArqRedis) -> None:
    store = ApiKeyStore(real_arq)
    key, token = await store.create(subaccount="acme", operator=False, label="billing app", now=T0)
    assert TOKEN_RE.fullmatch(token) and token.startswith(f"sq_{key.id}_")
    assert key == ApiKey(id=key.id, subaccount="acme", operator=False, label="billing app", created_at=T0)
    assert key.active and not key.operator
    assert await store.authenticate(token) == key
    assert await store.get(key.id) == key
    # Each key gets its own id and secret.
    other, other_token = await store.create(subaccount="acme", operator=False)
    assert other.id != key.id and other_token.split("_", 2)[2] != token.split("_", 2)[2]
    assert await store.authenticate(other_token) == other


async def test_operator_keys(real_arq: ArqRedis) -> None:
    store = ApiKeyStore(real_arq)
    everywhere, token = await store.create(subaccount=None, operator=True, label="ops")
    scoped, scoped_token = await store.create(subaccount="acme", operator=True)
    assert (await store.authenticate(token), await store.authenticate(scoped_token)) == (everywhere, scoped)
    assert everywhere.subaccount is None and everywhere.operator
    assert scoped.subaccount == "acme" and scoped.operator


async def test_the_secret_is_stored_only_hashed(real_arq: ArqRedis) -> None:
    store = ApiKeyStore(real_arq)
    key, token = await store.create(subaccount="acme", operator=False, label="x")
    secret = token.removeprefix(f"sq_{key.id}_")
    dumped: list[bytes] = []
    async for name in real_arq.scan_iter(match="*"):
        dumped.append(name)
        kind = (await real_arq.type(name)).decode()
        if kind == "hash":
            for field, value in (await _aw(real_arq.hgetall(name))).items():
                dumped += [field, value]
        elif kind == "zset":
            dumped += [m for m, _ in await real_arq.zrange(name, 0, -1, withscores=True)]
        elif kind == "string":
            dumped.append(await real_arq.get(name))
        else:
            pytest.fail(f"unexpected {kind} key {name!r}: extend this test")
    blob = b"\n".join(dumped)
    assert secret.encode() not in blob and token.encode() not in blob
    # ... but its SHA-256 is (this checks that the scan above looked at the right place).
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in blob
    assert set(await real_arq.keys("*")) == {apikey(key.id).encode(), APIKEYS.encode()}


async def test_wrong_secret_and_unknown_id(real_arq: ArqRedis) -> None:
    store = ApiKeyStore(real_arq)
    key, token = await store.create(subaccount="acme", operator=False)
    _, other_token = await store.create(subaccount="acme", operator=False)
    secret = token.removeprefix(f"sq_{key.id}_")
    other_secret = other_token.split("_", 2)[2]
    assert await store.authenticate(f"sq_{key.id}_{other_secret}") is None
    unknown = "a" * 12 if key.id != "a" * 12 else "b" * 12
    assert await store.authenticate(f"sq_{unknown}_{secret}") is None
    assert await store.get(unknown) is None


async def test_every_one_character_change_is_refused(real_arq: ArqRedis) -> None:
    store = ApiKeyStore(real_arq)
    _, token = await store.create(subaccount="acme", operator=False)
    for i, original in enumerate(token):
        for replacement in ("a", "Z", "_", "-", "é", " ", ""):
            if replacement != original:
                assert await store.authenticate(token[:i] + replacement + token[i + 1 :]) is None, (i, replacement)
    for junk in (token + "A", token + "\n", " " + token, token.upper(), token[:-1], f"Bearer {token}"):
        assert await store.authenticate(junk) is None, junk
    assert await store.authenticate(token) is not None


@pytest.mark.parametrize(
    "junk",
    ["", "sq_", "sq__", "sq_abc_def", "sq_" + "a" * 12, "sq_" + "a" * 12 + "_", "x" * 1_000_000, "\x00", "sq_🔑_🔑"],
)
async def test_malformed_tokens(real_arq: ArqRedis, junk: str) -> None:
    assert await ApiKeyStore(real_arq).authenticate(junk) is None


_base32 = st.text(alphabet=ID_ALPHABET, min_size=12, max_size=12)
_tokenish = st.one_of(
    st.text(),
    st.text().map(lambda s: "sq_" + s),
    st.builds(lambda i, s: f"sq_{i}_{s}", _base32, st.text()),
    st.builds(lambda i, s: f"sq_{i}_{s}", _base32, st.text(alphabet="AZaz09_-", min_size=43, max_size=130)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=_tokenish)
async def test_junk_never_raises_nor_authenticates(real_arq: ArqRedis, token: str) -> None:
    store = ApiKeyStore(real_arq)
    if not await real_arq.exists(APIKEYS):  # a real key to (fail to) match; the fixture is not reset per example
        await store.create(subaccount="acme", operator=True)
    assert await store.authenticate(token) is None


async def test_revocation_applies_at_once(real_arq: ArqRedis) -> None:
    store = ApiKeyStore(real_arq)
    other = ApiKeyStore(real_arq)  # another process (an API server) that has already authenticated with it
    key, token = await store.create(subaccount="acme", operator=False, now=T0)
    assert await other.authenticate(token) == key
    later = T0 + timedelta(days=3)
    assert await store.revoke(key.id, now=later)
    assert await other.authenticate(token) is None
    revoked = await store.get(key.id)
    assert revoked is not None and not revoked.active and revoked.revoked_at == later
    assert revoked.model_copy(update={"revoked_at": None}) == key
    # Once only: a second revocation is refused and keeps the first time; the secret hash is gone.
    assert not await store.revoke(key.id, now=later + timedelta(hours=1))
    assert (await store.get(key.id)) == revoked
    assert await _aw(real_arq.hget(apikey(key.id), "secret")) is None


async def test_revoke_unknown_or_junk(real_arq: ArqRedis) -> None:
    store = ApiKeyStore(real_arq)
    assert not await store.revoke("a" * 12)
    for junk in ("", "x", "sq_whatever", "A" * 12, "*", "a" * 12 + ":x"):
        assert not await store.revoke(junk) and await store.get(junk) is None
    # A failed revoke writes nothing.
    assert await real_arq.keys("*") == []


def test_can_access() -> None:
    app = ApiKey(id="a" * 12, subaccount="acme", operator=False, created_at=T0)
    scoped = ApiKey(id="b" * 12, subaccount="acme", operator=True, created_at=T0)
    everywhere = ApiKey(id="c" * 12, subaccount=None, operator=True, created_at=T0)
    for key in (app, scoped):
        assert key.can_access("acme") and not key.can_access("acme2") and not key.can_access("")
    assert all(everywhere.can_access(s) for s in ("acme", "other", "x.y-z"))
    with pytest.raises(ValueError, match="belongs to a subaccount"):
        ApiKey(id="d" * 12, subaccount=None, operator=False, created_at=T0)


async def test_list_filters_and_orders_newest_first(real_arq: ArqRedis) -> None:
    store = ApiKeyStore(real_arq)
    assert await store.list() == []
    a1, _ = await store.create(subaccount="acme", operator=False, now=T0)
    b1, _ = await store.create(subaccount="beta", operator=False, now=T0 + timedelta(minutes=1))
    ops, _ = await store.create(subaccount=None, operator=True, now=T0 + timedelta(minutes=2))
    a2, _ = await store.create(subaccount="acme", operator=True, now=T0 + timedelta(minutes=3))
    assert await store.revoke(a1.id, now=T0 + timedelta(minutes=4))
    listed = await store.list()
    assert [k.id for k in listed] == [a2.id, ops.id, b1.id, a1.id]
    assert not listed[-1].active and all(k.active for k in listed[:-1])
    assert [k.id for k in await store.list("acme")] == [a2.id, a1.id]
    assert [k.id for k in await store.list("beta")] == [b1.id]
    assert await store.list("nobody") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subaccount": None, "operator": False}, "needs a subaccount"),
        ({"subaccount": "a:b", "operator": False}, "not a subaccount id"),
        ({"subaccount": "", "operator": True}, "not a subaccount id"),
        ({"subaccount": "-acme", "operator": False}, "not a subaccount id"),
        ({"subaccount": "a" * 65, "operator": False}, "not a subaccount id"),
        ({"subaccount": "acme", "operator": False, "label": "two\nlines"}, "label"),
        ({"subaccount": "acme", "operator": False, "label": "x" * 101}, "label"),
        ({"subaccount": "acme", "operator": False, "now": datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    real_arq: ArqRedis, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await ApiKeyStore(real_arq).create(**kwargs)  # type: ignore[arg-type]
    assert await real_arq.keys("*") == []


async def test_blank_label_is_no_label(real_arq: ArqRedis) -> None:
    key, _ = await ApiKeyStore(real_arq).create(subaccount="acme", operator=False, label="  ")
    assert key.label is None


# --- sendq keys ... ----------------------------------------------------------------------------------------


@pytest.fixture
def keys_cli(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    """Run ``sendq keys ...`` in process against an emptied private Redis; returns (exit code, stdout, stderr)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    settings_ = make_settings(redis_url=redis_server.url)
    parser = _Parser(prog="sendq")
    cli_keys.add_parser(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))

    def run(*args: str) -> tuple[int, str, str]:
        ns = parser.parse_args(["keys", *args])
        code = cli_keys.run(settings_, ns, _with_scheduler)
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    client.close()


def test_cli_create_list_revoke(keys_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, err = keys_cli("create", "--subaccount", "acme", "--label", "billing app")
    assert code == 0 and TOKEN_RE.fullmatch(out.strip()) and out.count("\n") == 1
    assert len(err.strip().splitlines()) == 1 and "shown only once" in err
    key_id = out.split("_")[1]
    assert key_id in err and out.strip() not in err

    code, out, err = keys_cli("create", "--operator")
    assert code == 0 and "operator key" in err and "all subaccounts" in err
    ops_id = out.split("_")[1]

    code, out, _ = keys_cli("list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["ID", "SUBACCOUNT", "KIND", "LABEL", "CREATED", "REVOKED"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {key_id, ops_id}
    assert rows[key_id].split()[1:3] == ["acme", "app"] and "billing app" in rows[key_id]
    assert rows[ops_id].split()[1:4] == ["*", "operator", "-"] and rows[ops_id].split()[-1] == "-"
    assert [line.split()[0] for line in keys_cli("list", "--subaccount", "acme")[1].splitlines()[1:]] == [key_id]

    assert keys_cli("revoke", key_id) == (0, f"revoked {key_id}\n", "")
    code, out, err = keys_cli("revoke", key_id)
    assert code == 1 and out == "" and "already revoked" in err and len(err.strip().splitlines()) == 1
    code, out, err = keys_cli("revoke", "a" * 12)
    assert code == 1 and err.strip() == f"sendq: no API key {'a' * 12}"
    revoked_row = next(line for line in keys_cli("list")[1].splitlines() if line.startswith(key_id))
    assert revoked_row.split()[-1] != "-"


def test_cli_token_authenticates(keys_cli, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from scheduler.enqueue import connect

    token = keys_cli("create", "--subaccount", "acme", "--operator")[1].strip()

    async def check() -> ApiKey | None:
        arq = await connect(make_settings(redis_url=redis_server.url), patient=False)
        try:
            return await ApiKeyStore(arq).authenticate(token)
        finally:
            await arq.aclose()

    key = asyncio.run(check())
    assert key is not None and key.operator and key.subaccount == "acme"


def test_cli_empty_list(keys_cli) -> None:  # type: ignore[no-untyped-def]
    assert keys_cli("list") == (0, "", "sendq: no API keys\n")
    assert keys_cli("list", "--subaccount", "acme") == (0, "", "sendq: no API keys for acme\n")


@pytest.mark.parametrize(
    ("args", "field", "fragment"),
    [
        (["create"], "--subaccount", "required, except for an --operator key"),
        (["create", "--subaccount", "acme", "--label", "a\tb"], "--label", "printable"),
        (["revoke", "nope"], "id", "not an API key id"),
        (["revoke", "sq_abcdefghijkl_secret"], "id", "not the token"),
    ],
)
def test_cli_bad_input(keys_cli, args: list[str], field: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as raised:
        keys_cli(*args)
    assert raised.value.field == field and fragment in raised.value.reason


@pytest.mark.parametrize(
    "args",
    [["create", "--subaccount", "a:b"], ["list", "--subaccount", ""], ["revoke"], ["rotate"]],
)
def test_cli_usage_errors(keys_cli, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exited:
        keys_cli(*args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("sendq: error:") and len(err.strip().splitlines()) == 1


def test_table_alignment() -> None:
    keys = [
        ApiKey(id="a" * 12, subaccount="a-long-subaccount", operator=False, label="x", created_at=T0),
        ApiKey(id="b" * 12, subaccount=None, operator=True, created_at=T0, revoked_at=T0 + timedelta(hours=1)),
    ]
    lines = cli_keys.table(keys)
    assert len(lines) == 3
    kind_at = lines[0].index("KIND")
    assert lines[1][kind_at:].startswith("app") and lines[2][kind_at:].startswith("operator")
    assert lines[2].endswith("2026-03-01T13:00:00+00:00")
