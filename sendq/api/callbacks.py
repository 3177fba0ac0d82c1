"""Provider callbacks: ``POST /v1/receipts/{provider}`` (delivery receipts) and ``POST /v1/inbound/{provider}``
(messages from contacts, which open the WhatsApp customer-care window).

Providers authenticate with their own scheme (Twilio's signature, basic-auth credentials for the others), not
with API keys. Each callback is verified on its raw body, parsed by the provider's adapter and applied to the
store before the 200 goes out: a provider that gets no 2xx retries, so nothing acknowledged is ever lost. The
apply step is a few pipelined Lua calls, so the answer stays fast.
"""

from datetime import datetime

import structlog
from fastapi import APIRouter, Request
from pydantic import BaseModel

from providers.base import WebhookParser, WebhookRequest
from providers.routing import Providers
from sendq.api.problems import ApiProblem, responses
from sendq.errors import BadWebhook, WebhookRejected
from sendq.message import utcnow
from sendq.receipts import ReceiptBook
from sendq.settings import Settings
from sendq.subaccounts import SubaccountStore

log = structlog.get_logger("sendq.callbacks")

router = APIRouter(tags=["provider callbacks"])


class ReceiptsApplied(BaseModel):
    """What a receipt callback did (providers only look at the status code)."""

    applied: int
    #: duplicates, replays and receipts older than the message's status: nothing changed
    unchanged: int
    #: no message known under that provider id (yet): kept for an hour in case the send is being recorded
    unknown: int
    #: intermediate statuses that change nothing
    ignored: int
    suppressed: int


class InboundRecorded(BaseModel):
    recorded: int
    #: inbound messages to an address no route names: acknowledged and logged
    unrouted: int


def signed_url(request: Request, settings: Settings) -> str:
    """The URL the provider was told to call, which Twilio signs: the public base URL when sendq runs behind a
    proxy, with the path and query as received."""
    if not settings.public_url:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return settings.public_url.rstrip("/") + request.url.path + query


async def _verified(request: Request, provider: str) -> tuple[WebhookParser, WebhookRequest]:
    providers: Providers = request.app.state.providers
    parser = providers.webhook(provider)
    if parser is None:
        raise ApiProblem(404, "Not found", f"no provider {provider!r} with callbacks is configured")
    hook = WebhookRequest(
        url=signed_url(request, request.app.state.settings),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.body(),
    )
    try:
        parser.verify(hook)
    except WebhookRejected as exc:
        log.warning("callback.rejected", provider=provider, reason=str(exc))
        raise ApiProblem(401, "Callback not verified", str(exc)) from None
    return parser, hook


def _bad(provider: str, exc: BadWebhook) -> ApiProblem:
    log.warning("callback.malformed", provider=provider, reason=str(exc))
    return ApiProblem(400, "Malformed callback", str(exc))


@router.post("/v1/receipts/{provider}", response_model=ReceiptsApplied, responses=responses(400, 401, 404, 503))
async def receive_receipts(request: Request, provider: str) -> ReceiptsApplied:
    """Delivery receipts from ``provider``, applied in order; duplicates and late arrivals change nothing."""
    parser, hook = await _verified(request, provider)
    try:
        receipts = parser.parse_receipts(hook)
    except BadWebhook as exc:
        raise _bad(provider, exc) from None
    book: ReceiptBook = request.app.state.receipts
    report = await book.apply(provider, receipts, utcnow())
    return ReceiptsApplied(
        applied=report.applied,
        unchanged=report.unchanged,
        unknown=report.parked,
        ignored=report.ignored,
        suppressed=report.suppressed,
    )


@router.post("/v1/inbound/{provider}", response_model=InboundRecorded, responses=responses(400, 401, 404, 503))
async def receive_inbound(request: Request, provider: str) -> InboundRecorded:
    """Messages contacts sent to one of our senders: each records the contact's last inbound time for the
    subaccounts whose route on ``provider`` uses that sender."""
    parser, hook = await _verified(request, provider)
    try:
        inbound = parser.parse_inbound(hook)
    except BadWebhook as exc:
        raise _bad(provider, exc) from None
    providers: Providers = request.app.state.providers
    subaccounts: SubaccountStore = request.app.state.subaccounts
    now = utcnow()
    recorded = unrouted = 0
    for item in inbound:
        owners = providers.inbound_subaccounts(provider, item.to)
        if not owners:
            unrouted += 1
            log.info("inbound.unrouted", provider=provider, to=item.to, channel=item.channel)
            continue
        at: datetime = min(item.at, now)  # a contact's clock cannot open the window in the future
        for subaccount in owners:
            await subaccounts.record_inbound(subaccount, item.contact, at)
        recorded += 1
    return InboundRecorded(recorded=recorded, unrouted=unrouted)
