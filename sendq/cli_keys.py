"""``sendq keys ...``: an operator's commands for the API keys of the HTTP API (create, list, revoke).

They talk to Redis directly, like the other commands. A new key's token goes to stdout alone, so a script can
capture it (``TOKEN=$(sendq keys create --subaccount acme)``); the reminder that it is not shown again goes to
stderr.
"""

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any

from sendq.apikeys import ApiKey, ApiKeyStore, valid_id
from sendq.cli_args import subaccount_id
from sendq.errors import InvalidInput
from sendq.settings import Settings

_COLUMNS = ("ID", "SUBACCOUNT", "KIND", "LABEL", "CREATED", "REVOKED")


def add_parser(sub: Any) -> None:
    """Add ``keys`` and its subcommands to the ``sendq`` parser."""
    parser = sub.add_parser("keys", help="API keys of the HTTP API")
    cmds = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))

    create = cmds.add_parser("create", help="create a key and print its token (shown only once)")
    create.add_argument("--subaccount", type=subaccount_id, help="the subaccount the key belongs to")
    create.add_argument(
        "--operator", action="store_true", help="an operator key (ops, subaccount rules); all subaccounts if none given"
    )
    create.add_argument("--label", help="what the key is for, shown in lists")

    listed = cmds.add_parser("list", help="keys, newest first, revoked ones included")
    listed.add_argument("--subaccount", type=subaccount_id, help="only the keys of this subaccount")

    revoke = cmds.add_parser("revoke", help="revoke a key for good (takes effect at once)")
    revoke.add_argument("id", help="the key id, as shown by `sendq keys list`")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def _row(key: ApiKey) -> tuple[str, ...]:
    return (
        key.id,
        key.subaccount or "*",
        "operator" if key.operator else "app",
        key.label or "-",
        _when(key.created_at),
        _when(key.revoked_at),
    )


def table(keys: Sequence[ApiKey]) -> list[str]:
    """The lines of ``sendq keys list``: a header, then one aligned row per key."""
    rows = [_COLUMNS, *map(_row, keys)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


async def _create(store: ApiKeyStore, ns: argparse.Namespace) -> int:
    if ns.subaccount is None and not ns.operator:
        raise InvalidInput("--subaccount", "required, except for an --operator key (which then covers all)")
    try:
        key, token = await store.create(subaccount=ns.subaccount, operator=ns.operator, label=ns.label)
    except ValueError as exc:
        # The subaccount was already checked by argparse; what is left to refuse is the label.
        raise InvalidInput("--label", str(exc)) from None
    print(token)
    scope = "all subaccounts" if key.subaccount is None else key.subaccount
    kind = "operator" if key.operator else "application"
    print(
        f"sendq: created {kind} key {key.id} for {scope}; the token above is shown only once, store it now",
        file=sys.stderr,
    )
    return 0


async def _revoke(store: ApiKeyStore, ns: argparse.Namespace) -> int:
    key_id: str = ns.id.strip()
    if not valid_id(key_id):
        hint = " (pass the key id, not the token)" if key_id.startswith("sq_") else ""
        raise InvalidInput("id", f"{key_id!r} is not an API key id: 12 characters a-z, 2-7{hint}")
    if await store.revoke(key_id):
        print(f"revoked {key_id}")
        return 0
    key = await store.get(key_id)
    # get() after revoke() only chooses the message: the refusal itself came atomically from revoke().
    if key is None:
        print(f"sendq: no API key {key_id}", file=sys.stderr)
    else:
        print(f"sendq: API key {key_id} was already revoked at {_when(key.revoked_at)}", file=sys.stderr)
    return 1


async def _run(store: ApiKeyStore, ns: argparse.Namespace) -> int:
    if ns.action == "create":
        return await _create(store, ns)
    if ns.action == "revoke":
        return await _revoke(store, ns)
    keys = await store.list(ns.subaccount)
    if not keys:
        print("sendq: no API keys" + (f" for {ns.subaccount}" if ns.subaccount else ""), file=sys.stderr)
        return 0
    print("\n".join(table(keys)))
    return 0


def run(
    settings: Settings, ns: argparse.Namespace, with_redis: Callable[[Settings, Any], Coroutine[Any, Any, int]]
) -> int:
    async def act(scheduler: Any) -> int:
        return await _run(ApiKeyStore(scheduler.store.redis), ns)

    return asyncio.run(with_redis(settings, act))
