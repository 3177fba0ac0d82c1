"""The HTTP API end to end: httpx against the ASGI app (lifespan run) on the session's private redis-server.

Sending happens with a burst arq worker on the same Redis and a ``MockProvider``, which records every call.
"""

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from arq.worker import Worker
from redis.exceptions import RedisError

from providers.mock import MockProvider
from sendq.api.app import create_app
from sendq.apikeys import ApiKeyStore
from sendq.message import utcnow
from sendq.status import MessageStatus
from sendq.store import MessageStore
from sendq.subaccounts import RuleContext, SubaccountStore
from tests.conftest import RedisServer, free_port, make_settings
from tests.helpers import phone
from worker.app import worker_settings

pytestmark = pytest.mark.redis

PROBLEM = "application/problem+json"
PHONE = "+14155552671"


def sms(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {"channel": "sms", "to": phone(i), "body": f"hello {i}", **extra}


def iso(when: datetime) -> str:
    return when.isoformat()


def assert_problem(resp: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """The answer is a problem document with ``status``, naming ``field`` when given."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM), resp.headers
    doc: dict[str, Any] = resp.json()
    assert doc["status"] == status and doc["title"]
    if field is not None:
        assert doc["field"] == field, doc
        assert field in [e["field"] for e in doc["errors"]], doc
    return doc


async def message_keys(redis: ArqRedis) -> int:
    return len(await redis.keys("sendq:msg:*"))


# --- fixtures ------------------------------------------------------------------------------------------------

OpenClient = Callable[..., Awaitable[httpx.AsyncClient]]


@dataclass(frozen=True)
class Tokens:
    acme: str
    globex: str
    acme_ops: str
    all_ops: str


@pytest.fixture
async def tokens(real_arq: ArqRedis) -> Tokens:
    keys = ApiKeyStore(real_arq)
    return Tokens(
        acme=(await keys.create(subaccount="acme", operator=False, label="acme-app"))[1],
        globex=(await keys.create(subaccount="globex", operator=False, label="globex-app"))[1],
        acme_ops=(await keys.create(subaccount="acme", operator=True, label="acme-ops"))[1],
        all_ops=(await keys.create(subaccount=None, operator=True, label="ops"))[1],
    )


@pytest.fixture
async def open_client(real_arq: ArqRedis, redis_server: RedisServer) -> AsyncIterator[OpenClient]:
    """``await open_client(token, **settings)``: an httpx client on a started app (on the test's Redis)."""
    async with AsyncExitStack() as stack:

        async def open_(
            token: str | None = None, *, redis: ArqRedis | None = None, **overrides: Any
        ) -> httpx.AsyncClient:
            app = create_app(make_settings(redis_url=redis_server.url, **overrides), redis=redis or real_arq)
            await stack.enter_async_context(app.router.lifespan_context(app))
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)
            return await stack.enter_async_context(client)

        yield open_


@pytest.fixture
async def acme(open_client: OpenClient, tokens: Tokens) -> httpx.AsyncClient:
    return await open_client(tokens.acme)


@pytest.fixture
async def globex(open_client: OpenClient, tokens: Tokens) -> httpx.AsyncClient:
    return await open_client(tokens.globex)


@pytest.fixture
async def acme_ops(open_client: OpenClient, tokens: Tokens) -> httpx.AsyncClient:
    return await open_client(tokens.acme_ops)


@pytest.fixture
async def all_ops(open_client: OpenClient, tokens: Tokens) -> httpx.AsyncClient:
    return await open_client(tokens.all_ops)


MakeWorker = Callable[..., Worker]


@pytest.fixture
async def make_worker(real_arq: ArqRedis, redis_server: RedisServer) -> AsyncIterator[MakeWorker]:
    """A burst arq worker (dispatch jobs only) on the test's Redis: ``await make_worker(provider).main()``.

    A burst worker stops when the queue is empty, and deferred jobs count: with messages due later, pass
    ``max_burst_jobs`` (the number of due ones) so that it stops once they ran.
    """
    workers: list[Worker] = []

    def make(provider: MockProvider, *, max_burst_jobs: int = -1) -> Worker:
        opts = worker_settings(make_settings(redis_url=redis_server.url), provider=provider)
        opts.pop("cron_jobs")
        opts.pop("redis_settings")
        opts.update(redis_pool=real_arq, burst=True, handle_signals=False, poll_delay=0, max_burst_jobs=max_burst_jobs)
        worker = Worker(**opts)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        await worker.close()


@pytest.fixture
def store(real_arq: ArqRedis) -> MessageStore:
    return MessageStore(real_arq, retention=timedelta(days=1))


async def program(client: httpx.AsyncClient, item: dict[str, Any], **kw: Any) -> dict[str, Any]:
    resp = await client.post("/v1/messages", json=item, **kw)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def batch(client: httpx.AsyncClient, items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    resp = await client.post("/v1/batches", json={"messages": items, **extra})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def listing(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every page of ``GET /v1/messages`` with ``params``, concatenated."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        resp = await client.get("/v1/messages", params={**params, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.text
        page = resp.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in items]


# --- POST /v1/messages ---------------------------------------------------------------------------------------


async def test_program_returns_the_stored_message_with_its_history(acme: httpx.AsyncClient) -> None:
    resp = await acme.post("/v1/messages", json=sms(1, reference_id="order-1"))
    assert resp.status_code == 201
    assert resp.headers["content-type"] == "application/json"
    msg = resp.json()
    assert msg["subaccount"] == "acme" and msg["channel"] == "sms" and msg["to"] == phone(1)
    assert msg["status"] == "programmed" and msg["reference_id"] == "order-1" and msg["segments"] == 1
    assert msg["created_by"] == "acme-app"
    assert [s["status"] for s in msg["statuses"]] == ["programmed"]
    fetched = await acme.get(f"/v1/messages/{msg['id']}")
    assert fetched.status_code == 200 and fetched.json() == msg


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to": "+15551234567"}, "to"),
        ({"send_at": "2030-01-31T09:00:00"}, "send_at"),
        ({"channel": "fax"}, "channel"),
        ({"template": "welcome"}, "message"),
        ({"colour": "red"}, "colour"),
        ({"body": "x" * 20_001}, "body"),
        ({"validity_s": 0}, "validity_s"),
        ({"send_at": "2000-01-01T00:00:00Z"}, "send_at"),
    ],
    ids=[
        "bad-number",
        "naive-send-at",
        "unknown-channel",
        "body-and-template",
        "extra-field",
        "text-too-long",
        "zero-validity",
        "past-validity",
    ],
)
async def test_invalid_message_is_a_422_naming_the_field_and_stores_nothing(
    acme: httpx.AsyncClient, real_arq: ArqRedis, change: dict[str, Any], field: str
) -> None:
    resp = await acme.post("/v1/messages", json=sms(1) | change)
    doc = assert_problem(resp, 422, field)
    assert doc["detail"].startswith(f"{field}: ")
    assert await message_keys(real_arq) == 0


async def test_body_that_is_not_json_is_a_problem_not_a_500(acme: httpx.AsyncClient, real_arq: ArqRedis) -> None:
    resp = await acme.post("/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
    assert_problem(resp, 422)
    resp = await acme.post("/v1/messages", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert resp.status_code in (400, 422)
    assert_problem(resp, resp.status_code)
    assert await message_keys(real_arq) == 0


async def test_idempotency_key_replays_the_original(acme: httpx.AsyncClient, real_arq: ArqRedis) -> None:
    first = await acme.post("/v1/messages", json=sms(1), headers={"Idempotency-Key": "k-1"})
    again = await acme.post("/v1/messages", json=sms(1), headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    assert len(await listing(acme)) == 1
    other = await acme.post("/v1/messages", json=sms(1), headers={"Idempotency-Key": "k-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert len(await listing(acme)) == 2


async def test_idempotency_key_with_other_parameters_is_refused(acme: httpx.AsyncClient) -> None:
    """Stripe's rule: a key belongs to one request; reusing it for another is an error, not the original."""
    first = await acme.post("/v1/messages", json=sms(1), headers={"Idempotency-Key": "k-3"})
    assert first.status_code == 201
    other = await acme.post("/v1/messages", json=sms(2), headers={"Idempotency-Key": "k-3"})
    assert_problem(other, 422, "Idempotency-Key")
    assert len(await listing(acme)) == 1


async def test_idempotency_key_is_per_subaccount(acme: httpx.AsyncClient, globex: httpx.AsyncClient) -> None:
    a = await acme.post("/v1/messages", json=sms(1), headers={"Idempotency-Key": "same"})
    g = await globex.post("/v1/messages", json=sms(1), headers={"Idempotency-Key": "same"})
    assert a.status_code == g.status_code == 201
    assert g.json()["subaccount"] == "globex" and g.json()["id"] != a.json()["id"]


async def test_refused_request_does_not_use_up_its_idempotency_key(acme: httpx.AsyncClient) -> None:
    bad = await acme.post("/v1/messages", json=sms(1, to="nope"), headers={"Idempotency-Key": "k"})
    assert_problem(bad, 422, "to")
    good = await acme.post("/v1/messages", json=sms(1), headers={"Idempotency-Key": "k"})
    assert good.status_code == 201


async def test_repeated_reference_id_returns_the_original(acme: httpx.AsyncClient) -> None:
    first = await program(acme, sms(1, reference_id="order-7"))
    again = await acme.post("/v1/messages", json=sms(2, reference_id="order-7"))
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["to"] == phone(1)
    assert ids(await listing(acme)) == [first["id"]]


async def test_concurrent_requests_with_one_idempotency_key_store_one_message(acme: httpx.AsyncClient) -> None:
    answers = await asyncio.gather(
        *(acme.post("/v1/messages", json=sms(1), headers={"Idempotency-Key": "race"}) for _ in range(10))
    )
    assert {r.status_code for r in answers} <= {200, 201, 409}
    assert [r.status_code for r in answers].count(201) == 1
    assert len({r.json()["id"] for r in answers if r.status_code != 409}) == 1
    assert len(await listing(acme)) == 1


# --- GET /v1/messages/{id} and ?reference_id= ----------------------------------------------------------------


async def test_unknown_malformed_and_foreign_messages_are_404(
    acme: httpx.AsyncClient, globex: httpx.AsyncClient
) -> None:
    theirs = await program(globex, sms(1))
    for message_id in ("0" * 26, "not-an-id", "%2e%2e", theirs["id"]):
        for resp in (
            await acme.get(f"/v1/messages/{message_id}"),
            await acme.post(f"/v1/messages/{message_id}/cancel"),
        ):
            assert_problem(resp, 404)
    assert (await globex.get(f"/v1/messages/{theirs['id']}")).json()["status"] == "programmed"


async def test_find_by_reference(acme: httpx.AsyncClient, globex: httpx.AsyncClient) -> None:
    mine = await program(acme, sms(1, reference_id="r-1"))
    await program(globex, sms(1, reference_id="r-2"))
    found = await acme.get("/v1/messages", params={"reference_id": "r-1"})
    assert found.status_code == 200 and ids(found.json()["items"]) == [mine["id"]]
    for ref in ("r-2", "nope"):
        resp = await acme.get("/v1/messages", params={"reference_id": ref})
        assert resp.status_code == 200 and resp.json() == {"items": [], "next_cursor": None}


# --- GET /v1/messages: filters and pagination ---------------------------------------------------------------


async def test_list_filters(acme: httpx.AsyncClient, globex: httpx.AsyncClient) -> None:
    a = await batch(acme, [sms(i) for i in range(3)])
    a_ids = [item["message_id"] for item in a["items"]]
    await asyncio.sleep(0.005)
    mail1 = await program(acme, {"channel": "email", "to": "ann@example.com", "body": "hi"})
    await asyncio.sleep(0.005)
    mail2 = await program(acme, {"channel": "email", "to": "bob@example.com", "body": "hi"})
    await asyncio.sleep(0.005)
    csv = b"to,body\n" + b"".join(f"{phone(10 + i)},promo\n".encode() for i in range(2))
    upload = await acme.post("/v1/batches/file", files={"file": ("promo.csv", csv, "text/csv")})
    assert upload.status_code == 201, upload.text
    await program(globex, sms(1))
    assert (await acme.post(f"/v1/messages/{a_ids[0]}/cancel")).status_code == 200

    everything = await listing(acme)
    assert len(everything) == 7 and all(m["subaccount"] == "acme" for m in everything)
    # Listed records come without their history (null, not an empty one); GET has it.
    assert all(m["statuses"] is None for m in everything)
    assert [s["status"] for s in (await acme.get(f"/v1/messages/{a_ids[0]}")).json()["statuses"]] == [
        "programmed",
        "cancelled",
    ]
    promo = [m["id"] for m in everything if m["file_name"] == "promo.csv"]
    assert len(promo) == 2

    async def matching(**params: Any) -> set[str]:
        found = await listing(acme, **params)
        assert len(found) == len({m["id"] for m in found})
        return {m["id"] for m in found}

    assert await matching(status="cancelled") == {a_ids[0]}
    assert await matching(batch_id=a["id"]) == set(a_ids)
    assert await matching(channel="email") == {mail1["id"], mail2["id"]}
    assert await matching(file_name="promo.csv") == set(promo)
    assert await matching(created_from=mail1["created_at"], created_to=mail2["created_at"]) == {mail1["id"]}
    assert await matching(created_from=mail2["created_at"]) == {mail2["id"], *promo}
    assert await matching(created_to=mail1["created_at"]) == set(a_ids)
    assert await matching(batch_id=a["id"], status="programmed") == set(a_ids[1:])
    assert await matching(channel="sms", file_name="promo.csv", status="programmed") == set(promo)
    assert await matching(channel="email", status="cancelled") == set()
    assert await matching(batch_id="nope") == set()

    resp = await acme.get("/v1/messages", params={"created_from": "2030-01-01T00:00:00"})
    assert_problem(resp, 422, "created_from")
    for params in ({"status": "lost"}, {"channel": "fax"}, {"limit": 0}, {"limit": 1001}):
        assert_problem(await acme.get("/v1/messages", params=params), 422, next(iter(params)))


async def test_invalid_cursor_is_a_422(acme: httpx.AsyncClient) -> None:
    await program(acme, sms(1))
    for cursor in ("garbage!", "AAAA", "MDE6eA", "x" * 400):
        assert_problem(await acme.get("/v1/messages", params={"cursor": cursor}), 422, "cursor")


async def test_pages_have_no_duplicates_or_gaps_while_new_messages_arrive(acme: httpx.AsyncClient) -> None:
    # 100 messages of one batch share one creation ms (a tie group longer than a page), then 20 one by one.
    first = await batch(acme, [sms(i) for i in range(100)])
    assert first["accepted"] == 100
    for i in range(100, 120):
        await program(acme, sms(i))
    original = await listing(acme)
    assert len(original) == 120

    pages: list[list[dict[str, Any]]] = []
    arrivals: list[str] = []
    cursor = None
    while True:
        resp = await acme.get("/v1/messages", params={"limit": 25, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200
        pages.append(resp.json()["items"])
        cursor = resp.json()["next_cursor"]
        if cursor is None:
            break
        # New messages between page requests: one alone, and a batch of ten sharing a creation ms.
        arrivals.append((await program(acme, sms(500 + len(pages))))["id"])
        arrivals += [i["message_id"] for i in (await batch(acme, [sms(600 + j) for j in range(10)]))["items"]]

    walked = [m for page in pages for m in page]
    assert ids(walked) == ids(original)
    assert len(set(ids(walked))) == 120 and not set(arrivals) & set(ids(walked))
    # compared as times: a whole-second time is written without a fraction ("...:02Z" sorts after "...:02.002Z")
    order = [(datetime.fromisoformat(m["created_at"]), m["id"]) for m in walked]
    assert order == sorted(order, reverse=True)
    assert all(len(page) <= 25 for page in pages) and len(pages) >= 5
    newest = await acme.get("/v1/messages", params={"limit": 1000})
    assert set(ids(newest.json()["items"])) == set(ids(original)) | set(arrivals)


# --- cancel --------------------------------------------------------------------------------------------------


async def test_cancel_programmed_message(acme: httpx.AsyncClient) -> None:
    msg = await program(acme, sms(1, send_at=iso(utcnow() + timedelta(hours=1))))
    resp = await acme.post(f"/v1/messages/{msg['id']}/cancel")
    assert resp.status_code == 200
    assert resp.json()["status"] == "cancelled"
    assert [s["status"] for s in resp.json()["statuses"]] == ["programmed", "cancelled"]
    again = await acme.post(f"/v1/messages/{msg['id']}/cancel")
    assert "cancelled" in assert_problem(again, 409, "status")["detail"]


async def test_cancel_after_sending_is_a_409_naming_the_status(
    acme: httpx.AsyncClient, make_worker: MakeWorker
) -> None:
    msg = await program(acme, sms(1))
    provider = MockProvider()
    await make_worker(provider).main()
    assert [r.message_id for r in provider.sent] == [msg["id"]]
    sent = (await acme.get(f"/v1/messages/{msg['id']}")).json()
    assert sent["status"] == "sent" and sent["provider"] == "mock" and sent["attempts"] == 1
    assert [s["status"] for s in sent["statuses"]] == ["programmed", "processing", "sending", "sent"]
    doc = assert_problem(await acme.post(f"/v1/messages/{msg['id']}/cancel"), 409, "status")
    assert doc["detail"] == "the message is sent"


async def test_cancel_moved_to_sent_by_the_store_is_a_409(acme: httpx.AsyncClient, store: MessageStore) -> None:
    msg = await program(acme, sms(1))
    now = utcnow()
    lease = now + timedelta(minutes=1)
    for old, new in (
        (MessageStatus.PROGRAMMED, MessageStatus.PROCESSING),
        (MessageStatus.PROCESSING, MessageStatus.SENDING),
    ):
        assert (await store.transition(msg["id"], from_={old}, to=new, now=now, lease_until=lease)).ok
    doc = assert_problem(await acme.post(f"/v1/messages/{msg['id']}/cancel"), 409, "status")
    assert doc["detail"] == "the message is sending"
    assert (await store.transition(msg["id"], from_={MessageStatus.SENDING}, to=MessageStatus.SENT, now=now)).ok
    doc = assert_problem(await acme.post(f"/v1/messages/{msg['id']}/cancel"), 409, "status")
    assert doc["detail"] == "the message is sent"


async def test_acknowledged_cancels_race_a_running_worker_without_a_provider_call(
    acme: httpx.AsyncClient, make_worker: MakeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await batch(acme, [sms(i) for i in range(120)])
    message_ids = [i["message_id"] for i in created["items"]]
    # In no particular order, so that cancels land on messages waiting, claimed, being sent and already sent.
    random.Random(7).shuffle(message_ids)
    # The worker reads the subaccount's rules between its claim (processing) and its compare-and-set to sending:
    # slowed down, cancels land in that window too, and the compare-and-set must stop the provider call.
    context = SubaccountStore.context

    async def slow_context(self: SubaccountStore, *args: Any, **kwargs: Any) -> RuleContext:
        await asyncio.sleep(0.1)
        return await context(self, *args, **kwargs)

    monkeypatch.setattr(SubaccountStore, "context", slow_context)
    provider = MockProvider(latency_s=0.005)
    worker = make_worker(provider)

    async def cancel_all() -> list[httpx.Response]:
        answers = []
        for message_id in message_ids:
            answers.append(await acme.post(f"/v1/messages/{message_id}/cancel"))
            await asyncio.sleep(0)
        return answers

    _, answers = await asyncio.wait_for(asyncio.gather(worker.main(), cancel_all()), 60)
    called = {r.message_id for r in provider.sent}
    acknowledged = {mid for mid, r in zip(message_ids, answers, strict=True) if r.status_code == 200}
    refused = {mid: r for mid, r in zip(message_ids, answers, strict=True) if r.status_code != 200}
    assert not acknowledged & called
    for message_id, resp in refused.items():
        doc = assert_problem(resp, 409, "status")
        assert doc["detail"] in ("the message is sending", "the message is sent")
        assert message_id in called
    final = {m["id"]: m for m in await listing(acme)}
    assert {mid for mid, m in final.items() if m["status"] == "cancelled"} == acknowledged
    assert {mid for mid, m in final.items() if m["status"] == "sent"} == called
    # The race went every way: cancels before the claim, after it (while processing), and too late.
    histories = {mid: (await acme.get(f"/v1/messages/{mid}")).json()["statuses"] for mid in acknowledged}
    claimed = {mid for mid, history in histories.items() if "processing" in [h["status"] for h in history]}
    assert acknowledged - claimed and claimed and refused, (len(acknowledged), len(claimed), len(refused))


# --- POST /v1/batches ----------------------------------------------------------------------------------------


async def test_batch_with_partial_errors(acme: httpx.AsyncClient, real_arq: ArqRedis) -> None:
    items = [
        sms(0),
        sms(1, to="12"),
        {"channel": "email", "to": "ann@example.com", "body": "hi"},
        sms(3, send_at="2030-01-01T00:00:00"),
        sms(4, template="t"),
        sms(5, send_at="2000-01-01T00:00:00Z"),
    ]
    created = await batch(acme, items, created_by="campaign-bot")
    assert created["accepted"] == 2 and created["rejected"] == 4
    assert created["created_by"] == "campaign-bot" and created["channel"] == "mixed" and created["content"] == "hello 0"
    by_index = {i["index"]: i for i in created["items"]}
    assert sorted(by_index) == list(range(6))
    for index in (0, 2):
        assert by_index[index]["message_id"] and by_index[index]["status"] == "programmed"
        assert by_index[index]["field"] is None
    for index, field in ((1, "to"), (3, "send_at"), (4, "message"), (5, "send_at")):
        assert by_index[index]["message_id"] is None and by_index[index]["reason"], by_index[index]
        assert by_index[index]["field"].split(".")[-1] == field, by_index[index]
    stored = await listing(acme, batch_id=created["id"])
    assert {m["id"] for m in stored} == {by_index[0]["message_id"], by_index[2]["message_id"]}
    assert all(m["batch_id"] == created["id"] and m["created_by"] == "campaign-bot" for m in stored)
    # two records; born plain, they have no history list before their first change
    assert await message_keys(real_arq) == 2
    preview = (await acme.get(f"/v1/batches/{created['id']}")).json()
    assert preview["accepted"] == 2 and preview["rejected"] == 4 and preview["counts"] == {"programmed": 2}


async def test_batch_size_limit_is_a_413(open_client: OpenClient, tokens: Tokens, real_arq: ArqRedis) -> None:
    client = await open_client(tokens.acme, api_max_batch_items=3)
    assert (await client.post("/v1/batches", json={"messages": [sms(i) for i in range(3)]})).status_code == 201
    resp = await client.post("/v1/batches", json={"messages": [sms(i) for i in range(4)]})
    assert_problem(resp, 413, "messages")
    assert len(await listing(client)) == 3
    assert_problem(await client.post("/v1/batches", json={"messages": []}), 422, "messages")
    assert_problem(await client.post("/v1/batches", json={"messages": [sms(1)], "x": 1}), 422, "x")


async def test_body_limit_is_a_413_even_without_content_length(
    open_client: OpenClient, tokens: Tokens, real_arq: ArqRedis
) -> None:
    client = await open_client(tokens.acme, api_max_body_bytes=2048)
    big = sms(1, body="x" * 4000)
    assert_problem(await client.post("/v1/messages", json=big), 413)

    async def streamed() -> AsyncIterator[bytes]:
        raw = httpx.Request("POST", "/", json=big).content
        for start in range(0, len(raw), 512):
            yield raw[start : start + 512]

    resp = await client.post("/v1/messages", content=streamed(), headers={"content-type": "application/json"})
    assert "content-length" not in resp.request.headers
    assert_problem(resp, 413)
    assert await message_keys(real_arq) == 0
    assert (await client.post("/v1/messages", json=sms(1, body="x" * 1000))).status_code == 201


# --- POST /v1/batches/file -----------------------------------------------------------------------------------


async def test_csv_upload_with_bad_rows(acme: httpx.AsyncClient) -> None:
    csv = (
        "to,body,channel\n"
        f"{phone(1)},first,sms\n"  # row 2
        "+1555,bad number,sms\n"  # row 3
        f"{phone(3)},third,\n"  # row 4: the default channel
        f"{phone(4)},too,many,cells\n"  # row 5
        "\n"  # row 6: blank, skipped but counted
        "ann@example.com,mail,email\n"  # row 7
        f"{phone(8)},,sms\n"  # row 8: no body
    ).encode()
    resp = await acme.post(
        "/v1/batches/file", files={"file": ("uploads/../Leads March.csv", csv, "text/csv")}, data={"created_by": "ann"}
    )
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["file_name"] == "Leads March.csv" and created["created_by"] == "ann"
    assert created["accepted"] == 3 and created["rejected"] == 3 and created["channel"] == "mixed"
    errors = {i["index"]: i for i in created["items"]}
    assert sorted(errors) == [3, 5, 8]
    assert errors[3]["field"] == "to" and errors[5]["field"] == "row" and errors[8]["field"] == "row"
    assert all(e["message_id"] is None and e["reason"] for e in errors.values())
    stored = await listing(acme, batch_id=created["id"])
    assert sorted(m["to"] for m in stored) == sorted([phone(1), phone(3), "ann@example.com"])
    assert all(m["file_name"] == "Leads March.csv" and m["created_by"] == "ann" for m in stored)
    assert {m["id"] for m in await listing(acme, file_name="Leads March.csv")} == {m["id"] for m in stored}


@pytest.mark.parametrize(
    "csv",
    [b"", b"number,body\n+14155552671,hi\n", b"to\n+14155552671\n", b"to,body,to\n", b'to,body\n"unclosed,hi\n'],
    ids=["empty", "unknown-column", "no-body-column", "duplicate-column", "broken-quoting"],
)
async def test_unusable_csv_is_a_422_naming_file(acme: httpx.AsyncClient, real_arq: ArqRedis, csv: bytes) -> None:
    resp = await acme.post("/v1/batches/file", files={"file": ("x.csv", csv, "text/csv")})
    assert_problem(resp, 422, "file")
    assert await message_keys(real_arq) == 0


async def test_csv_broken_late_programs_nothing(acme: httpx.AsyncClient, real_arq: ArqRedis) -> None:
    """A file that breaks after 600 good rows (past the first programming chunk) stores no message and no batch:
    re-uploading the fixed file must not send the first rows twice."""
    good = "".join(f"{phone(i)},row {i}\n" for i in range(600))
    csv = ("to,body\n" + good + '+14155552671,"unclosed\n').encode()
    resp = await acme.post("/v1/batches/file", files={"file": ("late.csv", csv, "text/csv")})
    assert_problem(resp, 422, "file")
    assert await message_keys(real_arq) == 0
    assert (await acme.get("/v1/batches")).json()["items"] == []


async def test_csv_header_error_stores_no_batch(acme: httpx.AsyncClient) -> None:
    resp = await acme.post("/v1/batches/file", files={"file": ("x.csv", b"phone,text\n1,2\n", "text/csv")})
    assert_problem(resp, 422, "file")
    assert (await acme.get("/v1/batches")).json()["items"] == []


async def test_csv_upload_form_defaults(acme: httpx.AsyncClient) -> None:
    csv = f"to,body\n{phone(1)},hi\n".encode()
    when = utcnow().replace(microsecond=0) + timedelta(hours=2)
    resp = await acme.post(
        "/v1/batches/file", files={"file": ("a.csv", csv)}, data={"channel": "whatsapp", "send_at": iso(when)}
    )
    assert resp.status_code == 201, resp.text
    (msg,) = await listing(acme, batch_id=resp.json()["id"])
    assert msg["channel"] == "whatsapp" and datetime.fromisoformat(msg["send_at"]) == when
    bad = await acme.post("/v1/batches/file", files={"file": ("a.csv", csv)}, data={"channel": "fax"})
    assert_problem(bad, 422, "channel")
    naive = await acme.post("/v1/batches/file", files={"file": ("a.csv", csv)}, data={"send_at": "2030-01-01T09:00"})
    assert_problem(naive, 422, "send_at")
    assert_problem(await acme.post("/v1/batches/file", data={"channel": "sms"}), 422, "file")


async def test_upload_limit_is_a_413(open_client: OpenClient, tokens: Tokens, real_arq: ArqRedis) -> None:
    client = await open_client(tokens.acme, api_max_upload_bytes=4096, api_max_body_bytes=1024)
    rows = "".join(f"{phone(i)},hello\n" for i in range(400))
    assert len(rows) > 4096
    resp = await client.post("/v1/batches/file", files={"file": ("big.csv", f"to,body\n{rows}".encode())})
    assert_problem(resp, 413)
    assert await message_keys(real_arq) == 0
    # Streamed, without a Content-Length: refused all the same, while it arrives.
    upload = httpx.Request("POST", "/", files={"file": ("big.csv", f"to,body\n{rows}".encode())})
    multipart = upload.read()

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(multipart), 1000):
            yield multipart[start : start + 1000]

    headers = {"content-type": upload.headers["content-type"]}
    resp = await client.post("/v1/batches/file", content=streamed(), headers=headers)
    assert "content-length" not in resp.request.headers
    assert_problem(resp, 413)
    assert await message_keys(real_arq) == 0
    # The upload route has its own limit, above the body limit of the other routes.
    small = "".join(f"{phone(i)},hello\n" for i in range(60)).encode()
    assert 1024 < len(small) < 4096
    resp = await client.post("/v1/batches/file", files={"file": ("ok.csv", b"to,body\n" + small)})
    assert resp.status_code == 201 and resp.json()["accepted"] == 60


# --- GET /v1/batches, GET /v1/batches/{id} -------------------------------------------------------------------


async def test_list_batches_newest_first_and_by_file_name(acme: httpx.AsyncClient, globex: httpx.AsyncClient) -> None:
    one = await batch(acme, [sms(1)])
    csv = f"to,body\n{phone(2)},hi\n".encode()
    two = (await acme.post("/v1/batches/file", files={"file": ("leads.csv", csv)})).json()
    three = await batch(acme, [sms(3)])
    await batch(globex, [sms(4)])
    listed = (await acme.get("/v1/batches")).json()
    assert [b["id"] for b in listed["items"]] == [three["id"], two["id"], one["id"]]
    assert listed["next_cursor"] is None
    by_file = (await acme.get("/v1/batches", params={"file_name": "leads.csv"})).json()
    assert [b["id"] for b in by_file["items"]] == [two["id"]]
    page = (await acme.get("/v1/batches", params={"limit": 2})).json()
    assert [b["id"] for b in page["items"]] == [three["id"], two["id"]]
    rest = (await acme.get("/v1/batches", params={"limit": 2, "cursor": page["next_cursor"]})).json()
    assert [b["id"] for b in rest["items"]] == [one["id"]]
    assert_problem(await acme.get("/v1/batches", params={"cursor": "??"}), 422, "cursor")


async def test_batch_preview_after_sending(
    acme: httpx.AsyncClient, globex: httpx.AsyncClient, make_worker: MakeWorker
) -> None:
    later = iso(utcnow() + timedelta(hours=1))
    created = await batch(acme, [sms(0), sms(1), sms(2), sms(3, send_at=later), sms(4, send_at=later)])
    before = (await acme.get(f"/v1/batches/{created['id']}")).json()
    assert before["counts"] == {"programmed": 5} and before["first_sent_at"] is None
    assert before["content"] == "hello 0" and before["channel"] == "sms" and before["created_by"] == "acme-app"
    provider = MockProvider()
    await asyncio.wait_for(make_worker(provider, max_burst_jobs=3).main(), 30)
    assert len(provider.sent) == 3
    after = (await acme.get(f"/v1/batches/{created['id']}")).json()
    assert after["counts"] == {"sent": 3, "programmed": 2}
    assert after["accepted"] == 5 and after["rejected"] == 0
    first, last = datetime.fromisoformat(after["first_sent_at"]), datetime.fromisoformat(after["last_sent_at"])
    assert datetime.fromisoformat(after["created_at"]) - timedelta(seconds=1) <= first <= last <= utcnow()
    assert_problem(await globex.get(f"/v1/batches/{created['id']}"), 404)
    assert_problem(await acme.get("/v1/batches/nope"), 404)


async def test_cancel_batch_counts_by_status(acme: httpx.AsyncClient, make_worker: MakeWorker) -> None:
    later = iso(utcnow() + timedelta(hours=1))
    created = await batch(acme, [sms(0), sms(1), sms(2, send_at=later), sms(3, send_at=later), sms(4, send_at=later)])
    await asyncio.wait_for(make_worker(MockProvider(), max_burst_jobs=2).main(), 30)
    first_ids = [i["message_id"] for i in created["items"]]
    assert (await acme.post(f"/v1/messages/{first_ids[4]}/cancel")).status_code == 200
    resp = await acme.post(f"/v1/batches/{created['id']}/cancel")
    assert resp.status_code == 200
    assert resp.json() == {"cancelled": 2, "not_cancelled": {"sent": 2, "cancelled": 1}}
    preview = (await acme.get(f"/v1/batches/{created['id']}")).json()
    assert preview["counts"] == {"sent": 2, "cancelled": 3}
    again = await acme.post(f"/v1/batches/{created['id']}/cancel")
    assert again.json() == {"cancelled": 0, "not_cancelled": {"sent": 2, "cancelled": 3}}
    assert_problem(await acme.post("/v1/batches/nope/cancel"), 404)


async def test_reschedule_batch(acme: httpx.AsyncClient, globex: httpx.AsyncClient) -> None:
    later = utcnow() + timedelta(hours=1)
    created = await batch(acme, [sms(i, send_at=iso(later)) for i in range(3)])
    message_ids = [i["message_id"] for i in created["items"]]
    assert (await acme.post(f"/v1/messages/{message_ids[0]}/cancel")).status_code == 200
    when = (utcnow() + timedelta(hours=3)).replace(microsecond=0)
    resp = await acme.post(f"/v1/batches/{created['id']}/reschedule", json={"send_at": iso(when)})
    assert resp.status_code == 200
    assert resp.json() == {"rescheduled": 2, "skipped": {"not_waiting": 1}}
    for message_id in message_ids[1:]:
        moved = (await acme.get(f"/v1/messages/{message_id}")).json()
        assert datetime.fromisoformat(moved["send_at"]) == when and moved["status"] == "programmed"
        assert moved["statuses"][-1]["reason"] == "rescheduled"
    url = f"/v1/batches/{created['id']}/reschedule"
    assert_problem(await acme.post(url, json={"send_at": "2030-01-01T09:00:00"}), 422, "send_at")
    assert_problem(await acme.post(url, json={"send_at": iso(utcnow() + timedelta(days=400))}), 422, "send_at")
    assert_problem(await acme.post(url, json={}), 422, "send_at")
    assert_problem(await globex.post(url, json={"send_at": iso(when)}), 404)


# --- auth ----------------------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/v1/messages"),
    ("POST", "/v1/messages"),
    ("GET", "/v1/messages/01m845ez059pejeea9dnpft482"),
    ("GET", "/v1/batches"),
    ("POST", "/v1/batches/file"),
    ("GET", "/v1/subaccounts/acme"),
]


async def test_missing_wrong_and_revoked_keys_are_401(
    open_client: OpenClient, tokens: Tokens, real_arq: ArqRedis
) -> None:
    anonymous = await open_client()
    for method, path in ROUTES:
        resp = await anonymous.request(method, path)
        assert_problem(resp, 401)
        assert resp.headers["www-authenticate"] == "Bearer"
    key_id = tokens.acme.split("_")[1]
    wrong_secret = f"sq_{key_id}_{'A' * 43}"
    for token in (wrong_secret, "sq_aaaaaaaaaaaa_" + "B" * 43, "garbage", "x" * 5000):
        client = await open_client(token)
        resp = await client.get("/v1/messages")
        assert_problem(resp, 401)
        assert resp.headers["www-authenticate"] == "Bearer"
    basic = await anonymous.get("/v1/messages", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(basic, 401)

    acme = await open_client(tokens.acme)
    assert (await acme.get("/v1/messages")).status_code == 200
    assert await ApiKeyStore(real_arq).revoke(key_id)
    assert_problem(await acme.get("/v1/messages"), 401)


async def test_application_key_on_operator_routes_is_403(acme: httpx.AsyncClient) -> None:
    for method, path, body in (
        ("GET", "/v1/subaccounts/acme", None),
        ("PUT", "/v1/subaccounts/acme", {}),
        ("GET", "/v1/subaccounts/acme/allowlist", None),
        ("POST", "/v1/subaccounts/acme/allowlist/terms", {"value": "casino"}),
        ("DELETE", "/v1/subaccounts/acme/allowlist/terms/casino", None),
        ("GET", "/v1/subaccounts/acme/suppression/sms", None),
        ("POST", "/v1/subaccounts/acme/suppression", {"channel": "sms", "contact": PHONE}),
        ("DELETE", f"/v1/subaccounts/acme/suppression/sms/{PHONE}", None),
    ):
        assert_problem(await acme.request(method, path, json=body), 403)


async def test_operator_routes(acme_ops: httpx.AsyncClient, acme: httpx.AsyncClient) -> None:
    rules = (await acme_ops.get("/v1/subaccounts/acme")).json()
    assert rules["max_sms_segments"] == 10 and rules["blocked_time_policy"] == "defer"
    put = await acme_ops.put("/v1/subaccounts/acme", json={"max_sms_segments": 2, "allowed_channels": ["sms"]})
    assert put.status_code == 200 and put.json()["max_sms_segments"] == 2
    assert (await acme_ops.get("/v1/subaccounts/acme")).json()["allowed_channels"] == ["sms"]
    assert_problem(await acme_ops.put("/v1/subaccounts/acme", json={"max_sms_segments": 0}), 422, "max_sms_segments")
    assert_problem(await acme_ops.put("/v1/subaccounts/acme", json={"colour": 1}), 422, "colour")
    refused = await program(acme, {"channel": "email", "to": "ann@example.com", "body": "hi"})
    assert refused["status"] == "error"

    allowed = await acme_ops.post("/v1/subaccounts/acme/allowlist/domains", json={"value": "Example.COM"})
    assert allowed.status_code == 200 and allowed.json() == {"terms": [], "domains": ["example.com"]}
    assert (await acme_ops.post("/v1/subaccounts/acme/allowlist/terms", json={"value": "Casino"})).status_code == 200
    listed = (await acme_ops.get("/v1/subaccounts/acme/allowlist")).json()
    assert listed["domains"] == ["example.com"] and len(listed["terms"]) == 1
    assert (await acme_ops.delete("/v1/subaccounts/acme/allowlist/domains/example.com")).status_code == 204
    assert_problem(await acme_ops.delete("/v1/subaccounts/acme/allowlist/domains/example.com"), 404)
    assert_problem(await acme_ops.post("/v1/subaccounts/acme/allowlist/colours", json={"value": "red"}), 404)
    assert_problem(await acme_ops.post("/v1/subaccounts/acme/allowlist/domains", json={"value": "a b"}), 422, "value")

    suppressed = await acme_ops.post(
        "/v1/subaccounts/acme/suppression", json={"channel": "sms", "contact": f" {PHONE} ", "reason": "opt_out"}
    )
    assert suppressed.status_code == 201
    assert suppressed.json()["contact"] == PHONE and suppressed.json()["source"] == "acme-ops"
    entries = (await acme_ops.get("/v1/subaccounts/acme/suppression/sms")).json()
    assert [e["contact"] for e in entries] == [PHONE] and entries[0]["reason"] == "opt_out"
    blocked = await program(acme, sms(0, to=PHONE))
    assert blocked["status"] == "error"
    assert (await acme_ops.delete(f"/v1/subaccounts/acme/suppression/sms/{PHONE}")).status_code == 204
    assert (await acme_ops.get("/v1/subaccounts/acme/suppression/sms")).json() == []
    assert_problem(await acme_ops.delete(f"/v1/subaccounts/acme/suppression/sms/{PHONE}"), 404)
    bad = {"channel": "sms", "contact": "not a number"}
    assert_problem(await acme_ops.post("/v1/subaccounts/acme/suppression", json=bad), 422, "contact")


async def test_operator_key_of_one_subaccount_cannot_reach_another(acme_ops: httpx.AsyncClient) -> None:
    for method, path, body in (
        ("GET", "/v1/subaccounts/globex", None),
        ("PUT", "/v1/subaccounts/globex", {}),
        ("GET", "/v1/subaccounts/globex/allowlist", None),
        ("POST", "/v1/subaccounts/globex/allowlist/terms", {"value": "casino"}),
        ("GET", "/v1/subaccounts/globex/suppression/sms", None),
        ("POST", "/v1/subaccounts/globex/suppression", {"channel": "sms", "contact": PHONE}),
        ("DELETE", f"/v1/subaccounts/globex/suppression/sms/{PHONE}", None),
        ("GET", "/v1/messages?subaccount=globex", None),
        ("POST", "/v1/messages", sms(1, subaccount="globex")),
    ):
        assert_problem(await acme_ops.request(method, path, json=body), 404)
    assert (await acme_ops.get("/v1/subaccounts/acme")).status_code == 200


async def test_application_key_cannot_name_another_subaccount(
    acme: httpx.AsyncClient, globex: httpx.AsyncClient, real_arq: ArqRedis
) -> None:
    theirs = await batch(globex, [sms(1)])
    assert_problem(await acme.post("/v1/messages", json=sms(1, subaccount="globex")), 404)
    assert_problem(await acme.post("/v1/batches", json={"messages": [sms(1)], "subaccount": "globex"}), 404)
    assert_problem(await acme.get("/v1/messages", params={"subaccount": "globex"}), 404)
    assert_problem(await acme.get(f"/v1/batches/{theirs['id']}", params={"subaccount": "globex"}), 404)
    assert_problem(await acme.post(f"/v1/batches/{theirs['id']}/cancel"), 404)
    assert (await globex.get(f"/v1/batches/{theirs['id']}")).json()["counts"] == {"programmed": 1}
    mine = await acme.post("/v1/messages", json=sms(1, subaccount="acme"))
    assert mine.status_code == 201


async def test_all_subaccounts_operator_key_names_the_subaccount(
    all_ops: httpx.AsyncClient, acme: httpx.AsyncClient
) -> None:
    for method, path, body in (
        ("GET", "/v1/messages", None),
        ("POST", "/v1/messages", sms(1)),
        ("POST", "/v1/batches", {"messages": [sms(1)]}),
        ("GET", "/v1/batches", None),
    ):
        assert_problem(await all_ops.request(method, path, json=body), 422, "subaccount")
    made = await all_ops.post("/v1/messages", json=sms(1, subaccount="acme"))
    assert made.status_code == 201 and made.json()["subaccount"] == "acme" and made.json()["created_by"] == "ops"
    assert ids((await all_ops.get("/v1/messages", params={"subaccount": "acme"})).json()["items"]) == [
        made.json()["id"]
    ]
    assert (await all_ops.get("/v1/messages", params={"subaccount": "globex"})).json()["items"] == []
    assert (await all_ops.get(f"/v1/messages/{made.json()['id']}")).status_code == 200
    assert (await acme.get(f"/v1/messages/{made.json()['id']}")).status_code == 200
    csv = f"to,body\n{phone(1)},hi\n".encode()
    upload = await all_ops.post("/v1/batches/file", files={"file": ("a.csv", csv)}, data={"subaccount": "globex"})
    assert upload.status_code == 201 and upload.json()["subaccount"] == "globex"
    assert (await all_ops.put("/v1/subaccounts/globex", json={"max_sms_segments": 3})).status_code == 200


# --- health --------------------------------------------------------------------------------------------------


async def test_health(acme: httpx.AsyncClient, open_client: OpenClient) -> None:
    anonymous = await open_client()
    assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
    ready = await anonymous.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_without_redis_readyz_is_503_and_nothing_is_a_500(open_client: OpenClient, tokens: Tokens) -> None:
    # A client on a port nothing listens on: created without a round trip, every command then fails.
    gone = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    client = await open_client(tokens.acme, redis=gone)
    assert (await client.get("/healthz")).status_code == 200
    assert_problem(await client.get("/readyz"), 503)
    assert_problem(await client.post("/v1/messages", json=sms(1)), 503)
    assert_problem(await client.get("/v1/messages"), 503)
    await gone.aclose()


async def test_the_app_does_not_start_without_redis(redis_server: RedisServer) -> None:
    # Without a client of its own, the app connects at start-up and fails fast (an orchestrator restarts it).
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises((OSError, RedisError)):
        async with app.router.lifespan_context(app):
            pass


async def test_times_are_utc_and_the_post_answer_equals_a_later_get(acme: httpx.AsyncClient) -> None:
    when = (utcnow() + timedelta(days=2)).replace(microsecond=123456)
    local = when.astimezone(timezone(timedelta(hours=-5)))
    msg = await program(acme, sms(1, send_at=local.isoformat()))
    assert datetime.fromisoformat(msg["send_at"]) == when.replace(microsecond=123000)
    for name in ("send_at", "created_at", "status_at", "valid_until"):
        assert datetime.fromisoformat(msg[name]).utcoffset() == timedelta(0), msg[name]
    assert (await acme.get(f"/v1/messages/{msg['id']}")).json() == msg
