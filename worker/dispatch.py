"""The dispatch job: claim, re-check, send once per attempt, record the outcome."""

from datetime import datetime, timedelta
from typing import Any

import structlog

from providers.base import Provider, SendResult, StatusLookup
from scheduler.backoff import RetryDecision
from scheduler.enqueue import left_without_job
from scheduler.requeue import block, reprogram
from sendq.errors import ProviderError, RetryableProviderError
from sendq.message import Message
from sendq.policy import Verdict
from sendq.reports import Lookup, Receipt
from sendq.status import MessageStatus
from sendq.store import Transition
from sendq.subaccount import SubaccountRules
from worker.services import Services, services

log = structlog.get_logger("sendq.dispatch")

_S = MessageStatus
#: a job that starts this early (clock skew between producer and worker) still sends
_EARLY_TOLERANCE = timedelta(milliseconds=500)


def give_up_reason(reason: str, *, maybe_sent: bool) -> str:
    """The error reason when sendq stops trying.

    While an earlier attempt's outcome is unknown (a timeout the provider may have accepted), the honest reason
    is ``unknown_outcome`` whatever ended the retries: the message may have been sent.
    """
    return "unknown_outcome" if maybe_sent else reason


async def dispatch(ctx: dict[str, Any], message_id: str, version: int) -> str:
    """Send message ``message_id`` if job ``version`` still owns it; returns what happened (for arq's log).

    arq may run a job more than once; every step is a compare-and-set on (status, version), so a rerun, a
    stale job or a job racing a cancel finds the message elsewhere and does nothing.
    """
    svc = services(ctx)
    with structlog.contextvars.bound_contextvars(message_id=message_id, job_version=version):
        claim = await _claim(svc, message_id, version)
        if not claim.ok and claim.status is _S.BLOCKED_TIME and claim.job_version == version:
            claim = await _release(svc, message_id, version)
        if not claim.ok or claim.record is None:
            log.info("message.skipped", status=claim.status, current_version=claim.job_version)
            return f"skipped:{claim.status}"
        return await _process(svc, claim.record, version)


async def _claim(svc: Services, message_id: str, version: int) -> Transition:
    now = svc.clock()
    return await svc.store.transition(
        message_id,
        from_={_S.PROGRAMMED},
        to=_S.PROCESSING,
        now=now,
        expected_version=version,
        lease_until=now + timedelta(seconds=svc.settings.lease_s),
        return_record=True,
    )


async def _release(svc: Services, message_id: str, version: int) -> Transition:
    """A deferred message's job fires at its release time: back to ``programmed``, then claim it."""
    message = await svc.store.get(message_id)
    now = svc.clock()
    if message is None or message.due_at > now + _EARLY_TOLERANCE:
        if message is not None:
            # Fired early (clock skew): this job ends, and the hand-over gives it its job again, at its due time.
            await left_without_job(svc.arq, message.due_at)
        return Transition(False, _S.BLOCKED_TIME, version, message.attempts if message else 0)
    released = await svc.store.transition(
        message_id,
        from_={_S.BLOCKED_TIME},
        to=_S.PROGRAMMED,
        now=now,
        reason="window_open",
        expected_version=version,
        due_at=now,
    )
    return await _claim(svc, message_id, version) if released.ok else released


async def _process(svc: Services, message: Message, version: int) -> str:
    now = svc.clock()
    store = svc.store
    if message.due_at > now + _EARLY_TOLERANCE:
        # An old job that fired early (e.g. the message was rescheduled later): hand it back to the clock.
        await reprogram(
            store,
            svc.arq,
            message.id,
            queue=svc.queue,
            from_={_S.PROCESSING},
            expected_version=version,
            now=now,
            due_at=message.due_at,
            reason="not_due",
        )
        return "not_due"
    if now > message.valid_until:
        reason = give_up_reason("expired", maybe_sent=message.reuse_key)
        await _give_up(
            svc, message, version, now, reason, f"expired: validity ended at {message.valid_until.isoformat()}"
        )
        return "expired"
    # The rules again, as of now: a backlog or a retry may have pushed the message out of its window, and an
    # operator may have revoked an allowlist entry or suppressed the contact since it was programmed.
    ctx = await svc.subaccounts.context(message.subaccount, message.channel, message.to)
    verdict = svc.rules.check(message, ctx, now)
    if not verdict.allowed:
        return await _refused(svc, message, version, verdict)
    provider = svc.providers.for_message(message.subaccount, message.channel)
    if message.reuse_key and message.provider and message.provider != provider.name:
        # The unsettled attempt went to another provider (the routes changed since): only that one can say
        # whether it was sent, or dedupe a resend.
        if message.provider not in svc.providers.names():
            gone = f"the unsettled attempt went to {message.provider}, which is no longer configured"
            await _give_up(svc, message, version, now, "unknown_outcome", gone)
            return "unknown_outcome"
        provider = svc.providers.get(message.provider)
    attempt = message.attempts + 1
    key = message.idempotency_key if (message.reuse_key and message.idempotency_key) else f"{message.id}:{attempt}"
    sending = await store.transition(
        message.id,
        from_={_S.PROCESSING},
        to=_S.SENDING,
        now=now,
        expected_version=version,
        count_attempt=True,
        lease_until=now + timedelta(seconds=svc.settings.lease_s),
        fields={
            "provider": provider.name,
            "idempotency_key": key,
            "provider_idempotent": provider.supports_idempotency,
        },
    )
    if not sending.ok:
        # Cancelled (or taken back) between the claim and here: no provider call.
        log.info("message.not_sent", status=sending.status)
        return f"skipped:{sending.status}"
    try:
        if message.reuse_key and isinstance(provider, StatusLookup):
            # The last attempt's outcome is unknown and this provider can be asked: ask before sending again.
            found = await provider.lookup(message)
            if found.found:
                # The provider has it: never send again, even when it did not say under which id.
                result = SendResult(found.provider_message_id or message.id)
                return await record_sent(svc, provider.name, message, version, result, ctx.rules, found)
        result = await provider.send(message, idempotency_key=key)
    except ProviderError as exc:
        return await _failed(svc, provider, message, version, sending.attempts, exc)
    except Exception as exc:  # a bug in a provider must not strand the message in sending
        log.exception("provider.crashed", provider=provider.name)
        wrapped = RetryableProviderError(f"provider raised {exc!r}", provider=provider.name, ambiguous=True)
        return await _failed(svc, provider, message, version, sending.attempts, wrapped)
    return await record_sent(svc, provider.name, message, version, result, ctx.rules)


async def _give_up(
    svc: Services, message: Message, version: int, now: datetime, reason: str | None, detail: str | None
) -> None:
    """A claimed message ends in ``error`` before any provider call of this attempt."""
    await svc.store.transition(
        message.id,
        from_={_S.PROCESSING},
        to=_S.ERROR,
        now=now,
        reason=reason,
        detail=detail,
        expected_version=version,
    )


async def _refused(svc: Services, message: Message, version: int, verdict: Verdict) -> str:
    now = svc.clock()
    if verdict.status is _S.BLOCKED_TIME:
        await block(
            svc.store,
            svc.arq,
            message,
            queue=svc.queue,
            expected_version=version,
            now=now,
            verdict=verdict,
        )
    else:
        await _give_up(svc, message, version, now, verdict.reason, verdict.detail)
    log.info("message.refused", status=verdict.status, reason=verdict.reason)
    return f"refused:{verdict.reason}"


async def record_sent(
    svc: Services,
    provider: str,
    message: Message,
    version: int,
    result: SendResult,
    rules: SubaccountRules,
    reconciled: Lookup | None = None,
) -> str:
    now = svc.clock()
    reason = "repeat_acknowledged" if result.repeat else None
    if reconciled is not None:
        reason = "reconciled"
    done = await svc.store.transition(
        message.id,
        from_={_S.SENDING},
        to=_S.SENT,
        now=now,
        reason=reason,
        detail="the provider had accepted the earlier attempt" if reconciled is not None else None,
        expected_version=version,
        fields={
            "provider_message_id": result.provider_message_id,
            "reuse_key": False,
            "last_error_code": None,
            "last_error": None,
        },
        receipt_deadline=now + timedelta(seconds=rules.receipt_timeout_s),
        provider_ref=(provider, result.provider_message_id),
    )
    if not done.ok:
        # Our lease ran out and the sweep took the message back; the resend reuses this key, so the
        # provider answers it with the same id and nothing goes out twice.
        log.warning("message.sent_after_lease", status=done.status, provider_message_id=result.provider_message_id)
        return "sent_late"
    log.info("message.sent", provider_message_id=result.provider_message_id, attempt=done.attempts)
    # Receipts that beat this record (fast providers call back before we get here), then what a lookup said.
    await svc.receipts.apply_parked(provider, result.provider_message_id, now)
    if reconciled is not None:
        await svc.receipts.apply(provider, [lookup_receipt(result.provider_message_id, reconciled)], now)
    return "sent"


def lookup_receipt(provider_message_id: str, found: Lookup) -> Receipt:
    """A provider's answer to a status query, as the receipt it stands for."""
    return Receipt(
        provider_message_id=provider_message_id,
        status=found.status or _S.SENT,
        at=found.at,
        code=found.code,
        reason=found.reason,
        suppress=found.suppress,
    )


async def _failed(
    svc: Services, provider: Provider, message: Message, version: int, attempt: int, error: ProviderError
) -> str:
    now = svc.clock()
    decision = svc.backoff.decide(attempt, error, now=now, valid_until=message.valid_until)
    # Once an attempt's outcome is unknown, the key stays until an answer settles it: a 429 or 500 to a later
    # attempt with the same key says nothing about whether the first one was accepted.
    reuse_key = error.ambiguous or message.reuse_key
    error_fields = {"last_error_code": error.code, "last_error": str(error)[:500], "reuse_key": reuse_key}
    can_settle = provider.supports_idempotency or isinstance(provider, StatusLookup)
    if reuse_key and decision.retry_at is not None and not can_settle:
        # Without idempotency keys or a status query, a resend after an unknown outcome could deliver it twice.
        decision = RetryDecision(None, "no_idempotency_key")
    if decision.retry_at is not None:
        await reprogram(
            svc.store,
            svc.arq,
            message.id,
            queue=svc.queue,
            from_={_S.SENDING},
            expected_version=version,
            now=now,
            due_at=decision.retry_at,
            reason="retry",
            detail=f"{error} ; next attempt in {decision.delay_s:.3f}s",
            fields=error_fields,
        )
        log.info("message.retry", error=str(error), attempt=attempt, delay_s=round(decision.delay_s, 3))
        return "retry"
    reason = give_up_reason(
        error.reason or decision.reason or "provider_rejected", maybe_sent=reuse_key and error.retryable
    )
    if error.suppress and not error.retryable:
        # The contact opted out or blocked the sender: never try them again.
        await svc.subaccounts.suppress_recipient(
            message, reason=error.reason, source=f"provider:{error.provider}", code=error.code, at=now
        )
    await svc.store.transition(
        message.id,
        from_={_S.SENDING},
        to=_S.ERROR,
        now=now,
        reason=reason,
        detail=f"{decision.reason}: {error}",
        expected_version=version,
        fields=error_fields,
    )
    log.info("message.error", reason=reason, error=str(error), attempt=attempt)
    return "error"
