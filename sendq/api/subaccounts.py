"""``/v1/subaccounts/{id}``: a subaccount's rules, allowlists and suppression list (operator keys only)."""

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from sendq.api.auth import OperatorKey, subaccount_of
from sendq.api.problems import ApiProblem, responses
from sendq.channel import Channel
from sendq.content import normalise_domain, normalise_term
from sendq.errors import InvalidInput
from sendq.message import utcnow
from sendq.recipients import canonical_recipient
from sendq.subaccount import SubaccountRules
from sendq.subaccounts import SubaccountStore, Suppression

router = APIRouter(prefix="/v1/subaccounts", tags=["subaccounts (operators)"])

SubaccountPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class Allowlists(BaseModel):
    terms: list[str]
    domains: list[str]


class AllowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Annotated[str, Field(min_length=1, max_length=253)]


class SuppressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel
    contact: Annotated[str, Field(min_length=1, max_length=320)]
    reason: Annotated[str, Field(min_length=1, max_length=100)] = "operator"


def _store(request: Request) -> SubaccountStore:
    return SubaccountStore(request.app.state.scheduler.store.redis)


@router.get("/{subaccount}", response_model=SubaccountRules, responses=responses(401, 403, 404, 422, 503))
async def get_rules(request: Request, subaccount: SubaccountPath, key: OperatorKey) -> SubaccountRules:
    return await _store(request).rules(subaccount_of(key, subaccount))


@router.put("/{subaccount}", response_model=SubaccountRules, responses=responses(400, 401, 403, 404, 413, 422, 503))
async def put_rules(
    request: Request, subaccount: SubaccountPath, rules: SubaccountRules, key: OperatorKey
) -> SubaccountRules:
    """Replace the rules (fields left out take their defaults)."""
    sub = subaccount_of(key, subaccount)
    await _store(request).set_rules(sub, rules)
    return rules


@router.get("/{subaccount}/allowlist", response_model=Allowlists, responses=responses(401, 403, 404, 422, 503))
async def get_allowlist(request: Request, subaccount: SubaccountPath, key: OperatorKey) -> Allowlists:
    terms, domains = await _store(request).allowlists(subaccount_of(key, subaccount))
    return Allowlists(terms=sorted(terms), domains=sorted(domains))


def _normalised(kind: str, value: str) -> tuple[str | None, str | None]:
    try:
        if kind == "terms":
            return normalise_term(value), None
        if kind == "domains":
            return None, normalise_domain(value)
    except ValueError as exc:
        raise InvalidInput("value", str(exc)) from None
    raise ApiProblem(404, "Not found", f"no allowlist {kind!r} (terms or domains)")


@router.post(
    "/{subaccount}/allowlist/{kind}", response_model=Allowlists, responses=responses(400, 401, 403, 404, 413, 422, 503)
)
async def allow(request: Request, subaccount: SubaccountPath, kind: str, body: AllowIn, key: OperatorKey) -> Allowlists:
    """Enable a restricted term (``terms``) or a link domain (``domains``) for the subaccount."""
    sub = subaccount_of(key, subaccount)
    term, domain = _normalised(kind, body.value)
    store = _store(request)
    await store.allow(sub, term=term, domain=domain)
    terms, domains = await store.allowlists(sub)
    return Allowlists(terms=sorted(terms), domains=sorted(domains))


@router.delete("/{subaccount}/allowlist/{kind}/{value}", status_code=204, responses=responses(401, 403, 404, 422, 503))
async def revoke(request: Request, subaccount: SubaccountPath, kind: str, value: str, key: OperatorKey) -> Response:
    sub = subaccount_of(key, subaccount)
    term, domain = _normalised(kind, value)
    if not await _store(request).revoke(sub, term=term, domain=domain):
        raise ApiProblem(404, "Not found", f"{value!r} is not enabled")
    return Response(status_code=204)


@router.get(
    "/{subaccount}/suppression/{channel}",
    response_model=list[Suppression],
    responses=responses(401, 403, 404, 422, 503),
)
async def suppression_list(
    request: Request, subaccount: SubaccountPath, channel: Channel, key: OperatorKey
) -> list[Suppression]:
    return await _store(request).suppression_list(subaccount_of(key, subaccount), channel)


@router.post(
    "/{subaccount}/suppression",
    status_code=201,
    response_model=Suppression,
    responses=responses(400, 401, 403, 404, 413, 422, 503),
)
async def suppress(request: Request, subaccount: SubaccountPath, body: SuppressIn, key: OperatorKey) -> Suppression:
    sub = subaccount_of(key, subaccount)
    try:
        contact = canonical_recipient(body.channel, body.contact)
    except InvalidInput as exc:
        raise InvalidInput("contact", exc.reason) from None
    entry = Suppression(
        contact=contact, channel=body.channel, reason=body.reason, at=utcnow(), source=key.label or f"key:{key.id}"
    )
    store = _store(request)
    await store.suppress(sub, entry)
    found = await store.suppressed(sub, body.channel, contact)
    return found or entry


@router.delete(
    "/{subaccount}/suppression/{channel}/{contact}", status_code=204, responses=responses(401, 403, 404, 422, 503)
)
async def unsuppress(
    request: Request, subaccount: SubaccountPath, channel: Channel, contact: str, key: OperatorKey
) -> Response:
    if not await _store(request).unsuppress(subaccount_of(key, subaccount), channel, contact):
        raise ApiProblem(404, "Not found", f"{contact!r} is not suppressed on {channel}")
    return Response(status_code=204)
