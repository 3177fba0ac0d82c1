"""Who is calling: ``Authorization: Bearer <key>``, resolved against the hashed keys in Redis on every request
(a revoked key stops working at once)."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sendq.api.problems import ApiProblem
from sendq.apikeys import ApiKey, ApiKeyStore

_bearer = HTTPBearer(auto_error=False, description="an API key from `sendq keys create`")


async def current_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ApiKey:
    if credentials is None:
        raise ApiProblem(401, "Missing or invalid API key", "send Authorization: Bearer <key>")
    keys: ApiKeyStore = request.app.state.apikeys
    key = await keys.authenticate(credentials.credentials)
    if key is None:
        raise ApiProblem(401, "Missing or invalid API key", "the key is unknown or revoked")
    return key


async def operator_key(key: Annotated[ApiKey, Depends(current_key)]) -> ApiKey:
    if not key.operator:
        raise ApiProblem(403, "Not allowed for this key", "this route needs an operator key")
    return key


Key = Annotated[ApiKey, Depends(current_key)]
OperatorKey = Annotated[ApiKey, Depends(operator_key)]


def subaccount_of(key: ApiKey, requested: str | None) -> str:
    """The subaccount a request acts on: the key's own, or for an all-subaccounts operator key the one asked."""
    if key.subaccount is not None:
        if requested is not None and requested != key.subaccount:
            # Another subaccount's data does not exist for this key.
            raise ApiProblem(404, "Not found", f"no subaccount {requested!r} for this key")
        return key.subaccount
    if requested is None:
        raise ApiProblem(
            422, "Invalid input", "subaccount: required with an all-subaccounts operator key", field="subaccount"
        )
    return requested
