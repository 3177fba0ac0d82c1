"""Subaccount policy: may this message go out at this time, and if not, which status and reason it gets.

Pure: the caller reads the subaccount's ``RuleContext`` (one round trip) and passes the time to judge. The
scheduler asks at programming time (for the send time, or now); the worker asks again just before the provider
call, because a backlog, a retry or an operator's change (a revoked allowlist entry, a new suppression) may have
changed the answer in between. Every refusal happens before any provider call.

Order: the checks that end in ``error`` come first, the sending window last, so a message that could never be
sent is not held or deferred first.
"""

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sendq.channel import Channel
from sendq.content import ContentRules, ContentViolation, check_content, normalise_term
from sendq.message import Message
from sendq.settings import Settings
from sendq.status import MessageStatus
from sendq.subaccount import BlockedTimePolicy
from sendq.subaccounts import RuleContext

#: WhatsApp allows free-form messages only this long after the contact's last message (Meta error 131047)
CARE_WINDOW: Final = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Verdict:
    """``status`` None means the message may go out; otherwise it gets ``status`` with ``reason``."""

    status: MessageStatus | None = None
    #: a snake_case code: suppressed, outside_care_window, restricted_term, restricted_link, ...
    reason: str | None = None
    #: one sentence for people: what was wrong and how to fix it
    detail: str | None = None
    #: a deferred ``blocked_time`` message goes out at this instant; None for a held one
    release_at: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.status is None


ALLOWED: Final = Verdict()


def _error(reason: str, detail: str) -> Verdict:
    return Verdict(MessageStatus.ERROR, reason, detail)


def content_text(message: Message) -> str:
    """The text the content rules judge: the body, or a template's variables (the template itself is approved,
    but its variables are the caller's free text)."""
    if message.body is not None:
        return message.body
    return "\n".join(message.variables.values())


class Policy:
    """The subaccount rules plus the deployment-wide content rules (restricted terms, links restricted)."""

    def __init__(self, restricted_terms: Iterable[str], *, links_restricted: bool) -> None:
        self.restricted_terms = frozenset(normalise_term(t) for t in restricted_terms)
        self.links_restricted = links_restricted
        self._checks: tuple[Callable[[Message, RuleContext, datetime], Verdict], ...] = (
            self._channel,
            self._suppression,
            self._care_window,
            self._segments,
            self._content,
            self.window,
        )

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def _violations(text: str, rules: ContentRules) -> tuple[ContentViolation, ...]:
        # A batch usually repeats one text (or a few): judge each distinct text once per allowlist state.
        return tuple(check_content(text, rules))

    @classmethod
    def from_settings(cls, settings: Settings) -> "Policy":
        return cls(settings.restricted_terms, links_restricted=settings.links_restricted)

    def check(self, message: Message, ctx: RuleContext, at: datetime) -> Verdict:
        """Judge ``message`` as if it were sent at ``at``."""
        for rule in self._checks:
            verdict = rule(message, ctx, at)
            if not verdict.allowed:
                return verdict
        return ALLOWED

    @staticmethod
    def _channel(message: Message, ctx: RuleContext, at: datetime) -> Verdict:
        if message.channel in ctx.rules.allowed_channels:
            return ALLOWED
        allowed = ", ".join(sorted(ctx.rules.allowed_channels)) or "none"
        return _error(
            "channel_not_allowed",
            f"channel {message.channel} is not enabled for subaccount {message.subaccount} (enabled: {allowed})",
        )

    @staticmethod
    def _suppression(message: Message, ctx: RuleContext, at: datetime) -> Verdict:
        entry = ctx.suppressed
        if entry is None:
            return ALLOWED
        source = f" by {entry.source}" if entry.source else ""
        return _error(
            "suppressed",
            f"{message.to} is on the {message.channel} suppression list of subaccount {message.subaccount} "
            f"({entry.reason}, added {entry.at.isoformat()}{source})",
        )

    @staticmethod
    def _care_window(message: Message, ctx: RuleContext, at: datetime) -> Verdict:
        if message.channel is not Channel.WHATSAPP or message.template is not None:
            return ALLOWED
        last = ctx.last_inbound
        # The window is [last, last + 24 h): at exactly 24 h it has closed.
        if last is not None and last <= at < last + CARE_WINDOW:
            return ALLOWED
        seen = f"last wrote at {last.isoformat()}" if last else "has never written"
        return _error(
            "outside_care_window",
            f"free-form WhatsApp needs the contact to have written within 24 h of the send time "
            f"({at.isoformat()}); the contact {seen}. Send an approved template instead",
        )

    @staticmethod
    def _segments(message: Message, ctx: RuleContext, at: datetime) -> Verdict:
        cap = ctx.rules.max_sms_segments
        if message.channel is not Channel.SMS or message.segments is None or message.segments <= cap:
            return ALLOWED
        return _error(
            "too_many_segments",
            f"the body needs {message.segments} SMS segments; subaccount {message.subaccount} allows at most {cap}",
        )

    def _content(self, message: Message, ctx: RuleContext, at: datetime) -> Verdict:
        rules = ContentRules(
            restricted_terms=self.restricted_terms,
            allowed_terms=ctx.allowed_terms,
            allowed_domains=ctx.allowed_domains,
            links_restricted=self.links_restricted,
        )
        violations = self._violations(content_text(message), rules)
        if not violations:
            return ALLOWED
        first = violations[0]
        detail = first.detail(message.subaccount)
        if len(violations) > 1:
            detail += f" (and {len(violations) - 1} more: " + ", ".join(v.value for v in violations[1:4]) + ")"
        return _error(first.reason, detail)

    @staticmethod
    def window(message: Message, ctx: RuleContext, at: datetime) -> Verdict:
        """The sending-window rule alone (for a reschedule)."""
        windows = ctx.rules.windows
        if not windows.restricted or windows.is_allowed(at):
            return ALLOWED
        outside = (
            f"{at.isoformat()} is outside the sending windows of subaccount {message.subaccount} ({windows.describe()})"
        )
        if ctx.rules.blocked_time_policy is BlockedTimePolicy.HOLD:
            return Verdict(
                MessageStatus.BLOCKED_TIME,
                "outside_window",
                f"{outside}; held until an operator reschedules or cancels it",
            )
        release = windows.next_allowed(at)
        if release is None:
            return _error("no_allowed_window", f"{outside}; no allowed time in the next 400 days")
        return Verdict(
            MessageStatus.BLOCKED_TIME,
            "outside_window",
            f"{outside}; released at {release.isoformat()}",
            release_at=release,
        )
