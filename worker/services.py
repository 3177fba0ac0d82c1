"""What a job needs, built once per worker process and read back out of arq's ``ctx``."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from arq.connections import ArqRedis

from providers.routing import Providers
from scheduler.backoff import BackoffPolicy
from scheduler.enqueue import Queue
from sendq.policy import Policy
from sendq.receipts import ReceiptBook
from sendq.settings import Settings
from sendq.store import MessageStore
from sendq.subaccounts import SubaccountStore


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: MessageStore
    arq: ArqRedis
    providers: Providers
    backoff: BackoffPolicy
    subaccounts: SubaccountStore
    receipts: ReceiptBook
    rules: Policy
    http: httpx.AsyncClient
    clock: Callable[[], datetime]
    queue: Queue


def services(ctx: dict[str, Any]) -> Services:
    svc = ctx["services"]
    assert isinstance(svc, Services)
    return svc
