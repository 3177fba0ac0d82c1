"""Property-based tests of the HTTP API from its own OpenAPI document (schemathesis), on a real Redis.

Every operation is called with generated requests, authenticated with a valid application key (an all-subaccounts
operator key on the operator routes, where an application key only gets 403), and every answer
must conform to the document: no 500, a documented status code, the documented content type, headers and body
schema (problem documents included).
"""

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings, strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.hooks import HookContext
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scheduler.enqueue import connect
from sendq.api.app import create_app
from sendq.apikeys import ApiKeyStore
from sendq.settings import Settings
from tests.conftest import RedisServer, make_settings

pytestmark = pytest.mark.redis

# The document does not depend on Redis, so the schema is loaded from an app that never starts; the requests go
# to an app on the session's private redis-server (the `api` fixture), whose lifespan schemathesis runs.
schema = schemathesis.openapi.from_dict(create_app(make_settings()).openapi())

#: The checks that must hold for every generated request, valid or not: no server error, and an answer the
#: document describes (status code, content type, headers, body schema).
#:
#: Two default checks are left out, on purpose:
#: - positive_data_acceptance (schema-valid input must get a 2xx): the document cannot express every rule a valid
#:   request must pass (a schema-valid ``to`` is almost never a real phone number, ids must name existing
#:   messages or batches), so a 422 or 404 for schema-valid input is the right answer;
#: - negative_data_rejection (schema-invalid input must get a 4xx): like most HTTP APIs, this one ignores query
#:   parameters it does not know, and the Authorization header the test adds to every call undoes the negative
#:   cases that leave it out. Schema-invalid input is still covered: it must get no 500 and a documented answer.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


#: A recipient each channel accepts: the document cannot say which strings are real phone numbers.
RECIPIENTS = {"sms": "+14155552671", "whatsapp": "+14155552672", "email": "ann@example.com", "webchat": "visitor-42"}
#: The routes of the application key; the document lets a request name any subaccount, the key allows only its own.
_APP_PATHS = ("/v1/messages", "/v1/batches")


def _plausible(item: Any) -> Any:
    """A generated message with the few rules the document cannot express applied, so that it can be stored: a
    real recipient, exactly one of body or template, no send time or validity (which may be out of range), and
    the key's own subaccount."""
    if not isinstance(item, dict):
        return item
    out = {k: v for k, v in item.items() if k not in ("subaccount", "send_at", "validity_s")}
    if out.get("channel") in RECIPIENTS:
        out["to"] = RECIPIENTS[out["channel"]]
    if "template" in out:
        out.pop("body", None)
    else:
        out.setdefault("body", "hello")
        out.pop("variables", None)
    return out


@schema.hook
def flatmap_body(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Half of the generated messages and batches are made acceptable, so that the success answers (201 with the
    stored message, batch items) are checked against the document too, not only the refusals."""
    operation = context.operation
    if operation is None or operation.method.upper() != "POST" or not isinstance(body, dict):
        return st.just(body)
    if operation.path == "/v1/messages":
        # A fixed reference_id makes replays (200 with the original) likely too.
        return st.sampled_from([body, _plausible(body), {**_plausible(body), "reference_id": "schema-replay"}])
    if operation.path == "/v1/batches" and isinstance(body.get("messages"), list):
        fixed = {k: v for k, v in body.items() if k != "subaccount"}
        fixed["messages"] = [_plausible(item) for item in body["messages"]]
        return st.sampled_from([body, fixed])
    return st.just(body)


@schema.hook
def flatmap_headers(context: HookContext, headers: Any) -> st.SearchStrategy[Any]:
    """Some programming requests share one Idempotency-Key, so that replays are checked against the document."""
    operation = context.operation
    if operation is None or operation.label != "POST /v1/messages" or not isinstance(headers, dict):
        return st.just(headers)
    return st.sampled_from([headers, {**headers, "idempotency-key": "schema-replay"}])


@schema.hook
def flatmap_query(context: HookContext, query: Any) -> st.SearchStrategy[Any]:
    """Half of the application key's queries leave out ``subaccount`` (any other one is a 404 for that key)."""
    operation = context.operation
    if operation is None or not operation.path.startswith(_APP_PATHS) or not isinstance(query, dict):
        return st.just(query)
    return st.sampled_from([query, {k: v for k, v in query.items() if k != "subaccount"}])


@dataclass(frozen=True)
class Api:
    app: FastAPI
    #: an application key of subaccount acme
    app_token: str
    #: an operator key for every subaccount, for the operator routes (an application key only gets 403 there)
    operator_token: str

    def headers(self, path: str) -> dict[str, str]:
        token = self.operator_token if path.startswith("/v1/subaccounts") else self.app_token
        return {"Authorization": f"Bearer {token}"}


async def _tokens(settings: Settings) -> tuple[str, str]:
    redis = await connect(settings)
    try:
        await redis.flushdb()
        keys = ApiKeyStore(redis)
        _, app_token = await keys.create(subaccount="acme", operator=False, label="schema")
        _, operator_token = await keys.create(subaccount=None, operator=True, label="schema-ops")
        return app_token, operator_token
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
def api(redis_server: RedisServer) -> Iterator[Api]:
    settings = make_settings(redis_url=redis_server.url)
    app_token, operator_token = asyncio.run(_tokens(settings))
    yield Api(create_app(settings), app_token, operator_token)
    # schemathesis keeps an app's lifespan running for the rest of the process; end it while Redis is still up.
    schemathesis_asgi.shutdown_lifespans()


#: examples per operation (API_SCHEMA_EXAMPLES raises it for a longer hunt)
EXAMPLES = int(os.environ.get("API_SCHEMA_EXAMPLES", "25"))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
def test_api_conforms_to_its_document(case: Any, api: Api) -> None:
    case.call_and_validate(app=api.app, headers=api.headers(case.path), checks=CHECKS)
