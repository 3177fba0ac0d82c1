"""Reconciling a message found in ``sending`` after its worker died: ask the provider before resending.

Only providers with a status query (``providers.base.StatusLookup``) can be asked; for the others the recovery
sweep keeps its rule (resend with the same idempotency key, or ``error``/``unknown_outcome``).
"""

from datetime import datetime

import structlog

from providers.base import SendResult
from scheduler.sweeps import Reconcile, ReconcileOutcome
from sendq.errors import ProviderError
from sendq.message import Message
from worker.dispatch import record_sent
from worker.services import Services

log = structlog.get_logger("sendq.reconcile")


def reconciler(svc: Services) -> Reconcile:
    """The sweep's hook: ask the message's provider what became of it."""

    async def reconcile(message: Message, now: datetime) -> ReconcileOutcome | None:
        provider = svc.providers.lookup(message.provider)
        if provider is None:
            return None
        try:
            found = await provider.lookup(message)
        except ProviderError as exc:
            if not exc.retryable:
                # This provider cannot be asked about this message (e.g. Sinch WhatsApp has no status query).
                log.info("reconcile.unsupported", message_id=message.id, provider=provider.name, error=str(exc))
                return None
            log.warning("reconcile.unreachable", message_id=message.id, provider=provider.name, error=str(exc))
            return "unknown"
        except Exception:  # a bug in an adapter must not stop the other sweeps
            log.exception("reconcile.crashed", message_id=message.id, provider=provider.name)
            return "unknown"
        if not found.found:
            log.info("reconcile.absent", message_id=message.id, provider=provider.name)
            return "absent"
        rules = await svc.subaccounts.rules(message.subaccount)
        # Found means never send again, even without the provider's id for it (receipts then cannot match).
        result = SendResult(found.provider_message_id or message.id)
        await record_sent(svc, provider.name, message, message.job_version, result, rules, found)
        log.info("reconcile.sent", message_id=message.id, provider=provider.name, status=found.status)
        return "sent"

    return reconcile
