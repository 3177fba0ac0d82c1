"""Provider callbacks and the status API end to end, with a real adapter: a message goes out through the
Infobip adapter to a loopback server that follows Infobip's contract, and its receipts come back through
``POST /v1/receipts/infobip`` (basic auth) on the app, on a private redis-server."""

import base64
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from arq.worker import Worker

from sendq.api.app import create_app
from sendq.apikeys import ApiKeyStore
from sendq.channel import Channel
from sendq.settings import Settings
from sendq.subaccounts import SubaccountStore
from tests.conftest import RedisServer, make_settings
from tests.contract_server import ContractServer, Recorded, Reply
from worker.app import worker_settings

pytestmark = pytest.mark.redis

SENDER = "+41793026727"
PHONE = "+14155552671"
HOOK_AUTH = "Basic " + base64.b64encode(b"infobip:s3cret").decode()


def infobip_contract(request: Recorded) -> Reply:
    """Infobip's SMS send: App-key auth, one destination with our message id, answered PENDING_ACCEPTED."""
    if request.headers.get("authorization") != "App key-1":
        return Reply(401, {"requestError": {"serviceException": {"messageId": "UNAUTHORIZED", "text": "bad key"}}})
    message = request.json()["messages"][0]
    destination = message["destinations"][0]
    status = {"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED", "description": "sent"}
    return Reply(200, {"bulkId": "b-1", "messages": [{**destination, "status": status}]})


#: Infobip's status groups
GROUPS = {"PENDING": 1, "UNDELIVERABLE": 2, "DELIVERED": 3, "EXPIRED": 4, "REJECTED": 5}


def report(message_id: str, name: str, group: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "bulkId": "b-1",
        "messageId": message_id,
        "to": PHONE.removeprefix("+"),
        "sentAt": "2026-11-23T10:00:00.000+0000",
        "doneAt": "2026-11-23T10:00:05.000+0000",
        "smsCount": 1,
        "status": {"groupId": GROUPS[group], "groupName": group, "id": 5, "name": name, "description": "x"},
        "error": error or {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": False},
    }


@pytest.fixture
async def env(real_arq: ArqRedis, redis_server: RedisServer) -> AsyncIterator[dict[str, Any]]:
    with ContractServer(infobip_contract) as server:
        settings = make_settings(
            redis_url=redis_server.url,
            provider="mock",
            routes=[{"subaccount": "acme", "channel": "sms", "provider": "infobip", "sender": SENDER}],
            infobip={
                "base_url": server.url,
                "api_key": "key-1",
                "webhook_user": "infobip",
                "webhook_password": "s3cret",
            },
            public_url="https://sendq.example.com",
        )
        token = (await ApiKeyStore(real_arq).create(subaccount="acme", operator=False, label="acme-app"))[1]
        async with AsyncExitStack() as stack:
            app = create_app(settings, redis=real_arq)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
            )
            yield {"client": client, "token": token, "server": server, "settings": settings, "redis": real_arq}


async def send_all(settings: Settings, redis: ArqRedis) -> None:
    """A burst worker with the configured providers (the route sends acme's SMS through Infobip)."""
    opts = worker_settings(settings)
    opts.pop("cron_jobs")
    opts.pop("redis_settings")
    opts.update(redis_pool=redis, burst=True, handle_signals=False, poll_delay=0)
    worker = Worker(**opts)
    try:
        await worker.main()
    finally:
        await worker.close()


async def program(env: dict[str, Any], **extra: Any) -> dict[str, Any]:
    item = {"channel": "sms", "to": PHONE, "body": "hello", **extra}
    resp = await env["client"].post("/v1/messages", json=item, headers={"Authorization": f"Bearer {env['token']}"})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def receipts(env: dict[str, Any], results: list[dict[str, Any]], auth: str | None = HOOK_AUTH) -> httpx.Response:
    headers = {"Authorization": auth} if auth else {}
    response: httpx.Response = await env["client"].post(
        "/v1/receipts/infobip", json={"results": results}, headers=headers
    )
    return response


async def test_sent_through_infobip_then_delivered_by_its_receipt(env: dict[str, Any]) -> None:
    msg = await program(env, reference_id="order-7")
    await send_all(env["settings"], env["redis"])
    sent = env["server"].requests[0].json()["messages"][0]
    assert sent["destinations"][0]["messageId"] == msg["id"] and sent["from"] == SENDER.removeprefix("+")
    assert sent["notifyUrl"] == "https://sendq.example.com/v1/receipts/infobip"

    first = await receipts(env, [report(msg["id"], "DELIVERED_TO_HANDSET", "DELIVERED")])
    replay = await receipts(env, [report(msg["id"], "DELIVERED_TO_HANDSET", "DELIVERED")])
    assert first.status_code == replay.status_code == 200
    assert (first.json()["applied"], replay.json()["applied"], replay.json()["unchanged"]) == (1, 0, 1)

    auth = {"Authorization": f"Bearer {env['token']}"}
    by_id = await env["client"].get("/v1/messages/status", params={"message_ids": msg["id"]}, headers=auth)
    by_ref = await env["client"].get("/v1/messages/status", params={"reference_ids": "order-7,nope"}, headers=auth)
    assert by_id.status_code == by_ref.status_code == 200, by_id.text
    assert by_id.json() == by_ref.json()
    (status,) = by_id.json()
    assert status["status"] == "delivered" and status["channel"] == "sms" and status["contact"] == PHONE
    assert [s["status"] for s in status["statuses"]] == ["programmed", "processing", "sending", "sent", "delivered"]
    assert status["sent_at"] == status["statuses"][3]["at"] and status["reference_id"] == "order-7"
    full = await env["client"].get(f"/v1/messages/{msg['id']}", headers=auth)
    assert full.json()["statuses"][4]["detail"].startswith("infobip time 2026-11-23T10:00:05")  # its doneAt


async def test_opt_out_receipt_suppresses_and_blocks_the_next_send(env: dict[str, Any]) -> None:
    msg = await program(env)
    await send_all(env["settings"], env["redis"])
    blocked = {"groupId": 2, "groupName": "USER_ERRORS", "id": 603, "name": "EC_CONTENT_BLOCKED", "permanent": True}
    resp = await receipts(env, [report(msg["id"], "UNDELIVERABLE_NOT_DELIVERED", "UNDELIVERABLE", blocked)])
    assert resp.json()["suppressed"] == 1
    entry = await SubaccountStore(env["redis"]).suppressed("acme", Channel.SMS, PHONE)
    assert entry is not None and entry.message_id == msg["id"]
    assert (entry.source or "").startswith("receipt:infobip")
    again = await program(env, body="are you there?")
    assert again["status"] == "error" and again["reason"] == "suppressed"


@pytest.mark.parametrize(
    ("auth", "status"),
    [
        (None, 401),
        ("Basic " + base64.b64encode(b"infobip:wrong").decode(), 401),
        ("Bearer s3cret", 401),
    ],
)
async def test_unverified_receipts_are_refused_and_change_nothing(
    env: dict[str, Any], auth: str | None, status: int
) -> None:
    msg = await program(env)
    await send_all(env["settings"], env["redis"])
    resp = await receipts(env, [report(msg["id"], "DELIVERED_TO_HANDSET", "DELIVERED")], auth=auth)
    assert resp.status_code == status and resp.headers["content-type"].startswith("application/problem+json")
    got = await env["client"].get(f"/v1/messages/{msg['id']}", headers={"Authorization": f"Bearer {env['token']}"})
    assert got.json()["status"] == "sent"


async def test_malformed_and_unconfigured_callbacks(env: dict[str, Any]) -> None:
    bad = await env["client"].post("/v1/receipts/infobip", content=b"{not json", headers={"Authorization": HOOK_AUTH})
    assert bad.status_code == 400
    unknown = await env["client"].post("/v1/receipts/twilio", data={"MessageSid": "SM1"})
    assert unknown.status_code == 404


async def test_receipt_for_an_unknown_message_is_acknowledged(env: dict[str, Any]) -> None:
    resp = await receipts(env, [report("never-sent", "DELIVERED_TO_HANDSET", "DELIVERED")])
    assert resp.status_code == 200 and resp.json()["unknown"] == 1


async def test_inbound_opens_the_whatsapp_window_of_the_routed_subaccount(env: dict[str, Any]) -> None:
    inbound = {
        "results": [
            {
                "messageId": "mo-1",
                "from": PHONE.removeprefix("+"),
                "to": SENDER.removeprefix("+"),
                "text": "hi",
                "receivedAt": "2026-11-23T09:00:00.000+0000",
            },
            {"messageId": "mo-2", "from": PHONE.removeprefix("+"), "to": "41000000000", "text": "x"},
        ]
    }
    resp = await env["client"].post("/v1/inbound/infobip", json=inbound, headers={"Authorization": HOOK_AUTH})
    assert resp.status_code == 200 and resp.json() == {"recorded": 1, "unrouted": 1}
    last = await SubaccountStore(env["redis"]).last_inbound("acme", PHONE)
    assert last is not None and last.isoformat().startswith("2026-11-23T09:00:00")


async def test_status_api_input_errors(env: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {env['token']}"}
    neither = await env["client"].get("/v1/messages/status", headers=auth)
    both = await env["client"].get(
        "/v1/messages/status", params={"message_ids": "a", "reference_ids": "b"}, headers=auth
    )
    too_many = await env["client"].get(
        "/v1/messages/status", params={"message_ids": ",".join(f"m{i}" for i in range(101))}, headers=auth
    )
    assert neither.status_code == both.status_code == too_many.status_code == 422
    assert too_many.json()["field"] == "message_ids"
    assert (await env["client"].get("/v1/messages/status", params={"message_ids": "x"})).status_code == 401


async def test_twilio_receipt_verified_against_the_public_url(real_arq: ArqRedis, redis_server: RedisServer) -> None:
    """Behind a proxy, Twilio signs the public callback URL; the app checks the signature against it, not against
    the internal URL it was reached at, and refuses a body changed after signing."""
    from providers.twilio import compute_signature

    settings = make_settings(
        redis_url=redis_server.url,
        provider="twilio",
        twilio={"account_sid": "AC123", "auth_token": "tok", "sms_from": SENDER},
        public_url="https://sendq.example.com/",
    )
    params = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": "AC123", "To": PHONE}
    signature = compute_signature("tok", "https://sendq.example.com/v1/receipts/twilio", params.items())
    async with AsyncExitStack() as stack:
        app = create_app(settings, redis=real_arq)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://internal:8000")
        )
        good = await client.post("/v1/receipts/twilio", data=params, headers={"X-Twilio-Signature": signature})
        changed = await client.post(
            "/v1/receipts/twilio",
            data={**params, "MessageStatus": "read"},
            headers={"X-Twilio-Signature": signature},
        )
    assert good.status_code == 200 and good.json()["unknown"] == 1  # verified; no such message yet
    assert changed.status_code == 401


async def test_status_api_leaves_out_malformed_ids(env: dict[str, Any]) -> None:
    """An id that is no message id (here a history key's suffix) is left out, not a 503."""
    msg = await program(env)
    auth = {"Authorization": f"Bearer {env['token']}"}
    resp = await env["client"].get(
        "/v1/messages/status", params={"message_ids": f"{msg['id']}:history,{msg['id']}"}, headers=auth
    )
    assert resp.status_code == 200 and [m["message_id"] for m in resp.json()] == [msg["id"]]
