"""Receipt figures for ``make bench``: receipts applied per second through ``POST /v1/receipts/{provider}``.

The app runs in this process behind httpx's ASGI transport (no sockets), on the run's private redis-server. N
messages are first moved to ``sent`` through the store's own transitions (with their provider-id links); then
each gets a ``delivered`` receipt in two provider shapes: Twilio's (form-encoded, one receipt per request,
``X-Twilio-Signature`` verified on every request, 32 requests in flight) and Infobip's (JSON, 100 reports per
request, basic auth, one request at a time).
"""

import asyncio
import base64
import time
from datetime import timedelta

import httpx
from pydantic import SecretStr

from providers.twilio import compute_signature
from scheduler.enqueue import connect
from sendq.api.app import create_app
from sendq.channel import Channel
from sendq.message import Message, utcnow
from sendq.provider_settings import InfobipSettings, ProviderRoute, TwilioSettings
from sendq.settings import Settings
from sendq.status import MessageStatus
from sendq.store import MessageStore

#: Infobip delivery reports per callback request (its default batch size for webhooks is 100)
INFOBIP_BATCH = 100
#: Twilio callbacks in flight at once (one receipt each)
CONCURRENCY = 32
_PUBLIC = "https://bench.example.com"


async def make_sent(store: MessageStore, ids: list[str], provider: str, channel: Channel = Channel.SMS) -> None:
    """Store messages ``ids`` and move them to ``sent`` as a worker would, with the provider id ``p-{id}``."""
    now = utcnow()
    lease = now + timedelta(minutes=5)
    for message_id in ids:
        n = int(message_id.rsplit("-", 1)[-1]) if "-" in message_id else 0
        await store.create(
            Message(
                id=message_id,
                subaccount="bench",
                channel=channel,
                to=f"+1415{2_000_000 + n % 8_000_000:07d}",
                body="Your code is 123456" if channel is Channel.SMS else None,
                template=None if channel is Channel.SMS else "code_v1",
                created_at=now,
                valid_until=now + timedelta(days=1),
                status=MessageStatus.PROGRAMMED,
                status_at=now,
                due_at=now,
            )
        )
    for step in (MessageStatus.PROCESSING, MessageStatus.SENDING):
        await store.transitions(
            [{"message_id": i, "from_": set(MessageStatus), "to": step, "now": now, "lease_until": lease} for i in ids]
        )
    await store.transitions(
        [
            {
                "message_id": i,
                "from_": {MessageStatus.SENDING},
                "to": MessageStatus.SENT,
                "now": now,
                "fields": {"provider": provider, "provider_message_id": f"p-{i}"},
                "provider_ref": (provider, f"p-{i}"),
                "receipt_deadline": now + timedelta(hours=72),
            }
            for i in ids
        ]
    )


async def run(redis_url: str, n: int = 20_000) -> dict[str, float]:
    settings = Settings(
        redis_url=redis_url,
        provider="twilio",
        routes=(ProviderRoute(provider="infobip", channel="sms", subaccount="bench-infobip"),),
        twilio=TwilioSettings(account_sid="ACbench", auth_token=SecretStr("bench-token"), sms_from="+14155550100"),
        infobip=InfobipSettings(api_key=SecretStr("k"), webhook_user="ib", webhook_password=SecretStr("pw")),
        public_url=_PUBLIC,
    )
    arq = await connect(settings)
    out: dict[str, float] = {"receipts": float(n)}
    try:
        await arq.flushdb()
        store = MessageStore(arq, retention=timedelta(days=1))
        twilio_ids = [f"tw-{i}" for i in range(n)]
        infobip_ids = [f"ib-{i}" for i in range(n)]
        for chunk in range(0, n, 1000):
            await make_sent(store, twilio_ids[chunk : chunk + 1000], "twilio")
            await make_sent(store, infobip_ids[chunk : chunk + 1000], "infobip")
        app = create_app(settings, redis=arq)
        url = f"{_PUBLIC}/v1/receipts/twilio"
        basic = "Basic " + base64.b64encode(b"ib:pw").decode()
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client,
        ):
            t0 = time.perf_counter()

            async def post_twilio(message_id: str) -> None:
                form = {"MessageSid": f"p-{message_id}", "MessageStatus": "delivered", "AccountSid": "ACbench"}
                signature = compute_signature("bench-token", url, form.items())
                r = await client.post("/v1/receipts/twilio", data=form, headers={"X-Twilio-Signature": signature})
                r.raise_for_status()
                assert r.json()["applied"] == 1, r.json()

            # Providers call back concurrently: CONCURRENCY requests in flight, as from a busy provider.
            for start in range(0, n, CONCURRENCY):
                await asyncio.gather(*(post_twilio(i) for i in twilio_ids[start : start + CONCURRENCY]))
            out["twilio_receipts_per_s"] = n / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            for start in range(0, n, INFOBIP_BATCH):
                results = [
                    {
                        "messageId": f"p-{i}",
                        "to": "14155552671",
                        "doneAt": "2026-11-23T10:00:05.000+0000",
                        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
                        "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": False},
                    }
                    for i in infobip_ids[start : start + INFOBIP_BATCH]
                ]
                r = await client.post(
                    "/v1/receipts/infobip", json={"results": results}, headers={"Authorization": basic}
                )
                r.raise_for_status()
                assert r.json()["applied"] == len(results), r.json()
            out["infobip_receipts_per_s"] = n / (time.perf_counter() - t0)
    finally:
        await arq.flushdb()
        await arq.aclose()
    return out
