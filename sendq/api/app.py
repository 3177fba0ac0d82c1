"""The FastAPI application: ``create_app(settings)``; ``sendq api`` serves it with uvicorn."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from arq.connections import ArqRedis
from fastapi import FastAPI, Request
from pydantic import BaseModel
from redis.exceptions import RedisError

from providers import build_providers
from providers.routing import Providers
from scheduler.enqueue import connect
from scheduler.intake import Scheduler
from sendq.api import batches, callbacks, messages, problems, statuses, subaccounts
from sendq.api.limits import BodyLimit
from sendq.api.problems import ApiProblem, responses
from sendq.apikeys import ApiKeyStore
from sendq.gc_tuning import tune_collector
from sendq.receipts import ReceiptBook
from sendq.settings import Settings
from sendq.store import MessageStore
from sendq.subaccounts import SubaccountStore


class Health(BaseModel):
    status: str


def app_from_environment() -> FastAPI:
    """The app on the settings of the environment: what each process of ``sendq api --workers N`` serves."""
    app = create_app(Settings())
    tune_collector()
    return app


def create_app(settings: Settings, *, redis: ArqRedis | None = None, providers: Providers | None = None) -> FastAPI:
    """The API on ``settings.redis_url``, or on ``redis`` when given (tests, ``sendq dev``); ``providers``
    replaces the configured ones (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis if redis is not None else await connect(settings, patient=False)
        store = MessageStore(client, retention=timedelta(seconds=settings.retention_s))
        http = httpx.AsyncClient()
        app.state.settings = settings
        app.state.scheduler = Scheduler(store, client, settings)
        app.state.apikeys = ApiKeyStore(client)
        app.state.subaccounts = SubaccountStore(client)
        app.state.receipts = ReceiptBook(store, app.state.subaccounts)
        # The adapters verify and parse callbacks; built from the same settings as the workers' (status queries
        # and sends never run here).
        app.state.providers = providers if providers is not None else build_providers(settings, http)
        try:
            yield
        finally:
            await http.aclose()
            if redis is None:
                await client.aclose()

    app = FastAPI(
        title="sendq",
        version="1",
        summary="Outbound dispatch for SMS, WhatsApp, web chat and e-mail: program, track, cancel.",
        lifespan=lifespan,
    )
    problems.install(app)
    # statuses first: its /v1/messages/status must not be read as a message id
    app.include_router(statuses.router)
    app.include_router(messages.router)
    app.include_router(callbacks.router)
    app.include_router(batches.router)
    app.include_router(subaccounts.router)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.api_max_body_bytes,
        max_upload_bytes=settings.api_max_upload_bytes,
        upload_path="/v1/batches/file",
    )

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, tags=["health"], responses=responses(503))
    async def readyz(request: Request) -> Health:
        """Readiness: Redis answers."""
        try:
            await request.app.state.scheduler.store.redis.ping()
        except (RedisError, OSError):
            raise ApiProblem(503, "Redis unavailable", "Redis does not answer") from None
        return Health(status="ready")

    return app
