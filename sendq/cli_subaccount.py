"""``sendq subaccount ...``: an operator's commands for a subaccount's rules, allowlists, suppression list and
the WhatsApp customer-care window. They talk to Redis directly, like the other commands."""

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from sendq.channel import Channel
from sendq.cli_args import subaccount_id
from sendq.content import normalise_domain, normalise_term
from sendq.errors import InvalidInput
from sendq.message import utcnow
from sendq.recipients import canonical_recipient
from sendq.settings import Settings
from sendq.subaccount import BlockedTimePolicy, SubaccountRules
from sendq.subaccounts import SubaccountStore, Suppression
from sendq.windows import parse_exception, parse_weekly


def _channel(value: str) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown channel {value!r} (one of {', '.join(Channel)})") from None


def _channels(value: str) -> frozenset[Channel]:
    return frozenset(_channel(v.strip()) for v in value.split(",") if v.strip())


def add_parser(sub: Any, aware: Callable[[str], datetime]) -> None:
    """Add ``subaccount`` and its subcommands to the ``sendq`` parser."""
    parser = sub.add_parser("subaccount", help="a subaccount's rules, allowlists and suppression list")
    cmds = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))

    cmds.add_parser("list", help="subaccounts with stored rules, allowlists or suppressions")

    show = cmds.add_parser("show", help="rules, enabled terms and domains")
    show.add_argument("subaccount", type=subaccount_id)
    show.add_argument("--json", action="store_true")

    set_ = cmds.add_parser("set", help="change rules; options not given keep their value")
    set_.add_argument("subaccount", type=subaccount_id)
    set_.add_argument("--timezone", help="IANA name, e.g. Europe/Madrid")
    set_.add_argument(
        "--window",
        action="append",
        metavar="DAYS=RANGES",
        help="weekly allowed hours, e.g. mon-fri=09:00-13:00,15:00-20:00 or sat=closed (repeat; replaces all)",
    )
    set_.add_argument("--no-windows", action="store_true", help="no weekly restriction")
    set_.add_argument(
        "--exception", action="append", metavar="DATE=RANGES", help="2026-12-25=closed or 2026-12-24=09:00-14:00"
    )
    set_.add_argument("--clear-exceptions", action="store_true")
    set_.add_argument("--blocked-time-policy", choices=[p.value for p in BlockedTimePolicy])
    set_.add_argument("--receipt-timeout", type=int, metavar="SECONDS")
    set_.add_argument("--max-segments", type=int, metavar="N", help="SMS segments a message may use")
    set_.add_argument("--channels", type=_channels, help="allowed channels, e.g. sms,whatsapp")

    for name, what in (("allow-term", "a restricted term"), ("allow-domain", "a link domain")):
        allow = cmds.add_parser(name, help=f"enable {what} for the subaccount")
        allow.add_argument("subaccount", type=subaccount_id)
        allow.add_argument("value")

    revoke = cmds.add_parser("revoke", help="take back an enabled term or domain")
    revoke.add_argument("subaccount", type=subaccount_id)
    what = revoke.add_mutually_exclusive_group(required=True)
    what.add_argument("--term")
    what.add_argument("--domain")

    suppress = cmds.add_parser("suppress", help="never send to this contact on this channel")
    unsuppress = cmds.add_parser("unsuppress", help="take a contact off the suppression list")
    for p in (suppress, unsuppress):
        p.add_argument("subaccount", type=subaccount_id)
        p.add_argument("contact")
        p.add_argument("--channel", type=_channel, required=True)
    suppress.add_argument("--reason", default="operator", help="why (default: operator)")
    suppress.add_argument("--by", help="who (kept with the entry)")

    listed = cmds.add_parser("suppressed", help="the suppression list of a channel")
    listed.add_argument("subaccount", type=subaccount_id)
    listed.add_argument("--channel", type=_channel, required=True)

    inbound = cmds.add_parser("inbound", help="record that a WhatsApp contact wrote (opens the 24-hour window)")
    inbound.add_argument("subaccount", type=subaccount_id)
    inbound.add_argument("contact")
    inbound.add_argument("--at", type=aware, help="when the contact wrote (default: now)")


def _updated(current: SubaccountRules, ns: argparse.Namespace) -> SubaccountRules:
    """The rules after ``set``; every value is validated, and the error names the flag."""
    data = current.model_dump(mode="json")
    windows = data["windows"]
    flag = "--window"
    try:
        if ns.no_windows:
            windows["weekly"] = None
        if ns.window:
            windows["weekly"] = {day.value: [str(r) for r in ranges] for day, ranges in parse_weekly(ns.window).items()}
        flag = "--exception"
        if ns.clear_exceptions:
            windows["exceptions"] = []
        for spec in ns.exception or ():
            exc = parse_exception(spec)
            windows["exceptions"] = [e for e in windows["exceptions"] if e["day"] != exc.day.isoformat()]
            windows["exceptions"].append(exc.model_dump(mode="json"))
    except ValueError as exc:
        raise InvalidInput(flag, str(exc)) from None
    for option, field in (
        ("timezone", None),
        ("blocked_time_policy", "blocked_time_policy"),
        ("receipt_timeout", "receipt_timeout_s"),
        ("max_segments", "max_sms_segments"),
        ("channels", "allowed_channels"),
    ):
        value = getattr(ns, option)
        if value is None:
            continue
        if field is None:
            windows["timezone"] = value
        else:
            data[field] = sorted(value) if isinstance(value, frozenset) else value
    try:
        return SubaccountRules.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        names = {
            "timezone": "--timezone",
            "receipt_timeout_s": "--receipt-timeout",
            "max_sms_segments": "--max-segments",
            "allowed_channels": "--channels",
            "exceptions": "--exception",
            "weekly": "--window",
        }
        flag = next((names[p] for p in reversed(loc) if p in names), "--" + loc[0].replace("_", "-"))
        raise InvalidInput(flag, err["msg"].removeprefix("Value error, ")) from None


def _contact(channel: Channel, raw: str) -> str:
    try:
        return canonical_recipient(channel, raw)
    except InvalidInput as exc:
        raise InvalidInput("contact", exc.reason) from None


def _normalised(field: str, normalise: Callable[[str], str], raw: str) -> str:
    try:
        return normalise(raw)
    except ValueError as exc:
        raise InvalidInput(field, str(exc)) from None


async def _show(store: SubaccountStore, ns: argparse.Namespace) -> int:
    rules = await store.rules(ns.subaccount)
    terms, domains = await store.allowlists(ns.subaccount)
    if ns.json:
        doc = rules.model_dump(mode="json") | {"allowed_terms": sorted(terms), "allowed_domains": sorted(domains)}
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(f"subaccount:          {ns.subaccount}")
    for line in rules.describe():
        print(line)
    print(f"enabled terms:       {', '.join(sorted(terms)) or '-'}")
    print(f"enabled domains:     {', '.join(sorted(domains)) or '-'}")
    return 0


async def _run(store: SubaccountStore, ns: argparse.Namespace) -> int:  # noqa: C901 (a flat dispatch table)
    action = ns.action
    sub: str = getattr(ns, "subaccount", "")  # `list` names none
    if action == "list":
        for name in await store.subaccounts():
            print(name)
    elif action == "show":
        return await _show(store, ns)
    elif action == "set":
        rules = _updated(await store.rules(sub), ns)
        await store.set_rules(sub, rules)
        print("\n".join([f"subaccount:          {sub}", *rules.describe()]))
    elif action in ("allow-term", "allow-domain"):
        if action == "allow-term":
            term = _normalised("term", normalise_term, ns.value)
            added = await store.allow(sub, term=term)
        else:
            term = _normalised("domain", normalise_domain, ns.value)
            added = await store.allow(sub, domain=term)
        print(f"enabled {term!r} for {sub}" if added else f"{term!r} was already enabled for {sub}")
    elif action == "revoke":
        if ns.term is not None:
            value = _normalised("--term", normalise_term, ns.term)
            removed = await store.revoke(sub, term=value)
        else:
            value = _normalised("--domain", normalise_domain, ns.domain)
            removed = await store.revoke(sub, domain=value)
        if not removed:
            print(f"sendq: {value!r} was not enabled for {sub}", file=sys.stderr)
            return 1
        print(f"revoked {value!r} for {sub}")
    elif action == "suppress":
        contact = _contact(ns.channel, ns.contact)
        entry = Suppression(contact=contact, channel=ns.channel, reason=ns.reason, at=utcnow(), source=ns.by)
        added = await store.suppress(sub, entry)
        print(f"suppressed {contact} on {ns.channel} for {sub}" if added else f"{contact} was already suppressed")
    elif action == "unsuppress":
        contact = _contact(ns.channel, ns.contact)
        if not await store.unsuppress(sub, ns.channel, contact):
            print(f"sendq: {contact} is not on the {ns.channel} suppression list of {sub}", file=sys.stderr)
            return 1
        print(f"{contact} can receive {ns.channel} messages from {sub} again")
    elif action == "suppressed":
        for e in await store.suppression_list(sub, ns.channel):
            print(f"{e.contact}\t{e.reason}\t{e.at.isoformat()}\t{e.source or '-'}\t{e.message_id or '-'}")
    elif action == "inbound":
        contact = _contact(Channel.WHATSAPP, ns.contact)
        at = ns.at or utcnow()
        moved = await store.record_inbound(sub, contact, at)
        last = await store.last_inbound(sub, contact)
        assert last is not None
        note = "" if moved else " (a later one was already recorded)"
        print(f"{contact} last wrote to {sub} at {last.isoformat()}{note}")
    return 0


def run(
    settings: Settings, ns: argparse.Namespace, with_redis: Callable[[Settings, Any], Coroutine[Any, Any, int]]
) -> int:
    async def act(scheduler: Any) -> int:
        return await _run(scheduler.subaccounts, ns)

    return asyncio.run(with_redis(settings, act))
