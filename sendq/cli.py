"""The ``sendq`` command. Bad input gets one readable line on stderr and a non-zero exit, never a traceback."""

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_settings import SettingsError
from redis.exceptions import RedisError

from sendq import cli_keys, cli_ops, cli_subaccount
from sendq.errors import ConfigurationError, InvalidInput, MessageNotFound, SendqError
from sendq.logging import configure_logging
from sendq.message import Message
from sendq.settings import Settings

#: exit codes: 0 done; 1 the operation was refused or failed; 2 bad input or configuration
EXIT_REFUSED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block first; one line is easier to read in scripts and logs.
        self.exit(EXIT_USAGE, f"sendq: error: {message} (see `{self.prog} --help`)\n")


def _aware(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no timezone offset (add Z or +01:00, for example)")
    return parsed


def _variable(value: str) -> tuple[str, str]:
    name, sep, val = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name, val


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return seconds


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if not 1 <= number <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, got {number}")
    return number


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    from providers import mock_server

    parser = _Parser(prog="sendq", description="Outbound dispatch and retry worker on arq and Redis.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    worker = sub.add_parser("worker", help="run an arq worker (dispatch jobs and sweeps)")
    worker.add_argument("--check", action="store_true", help="exit 0 if a worker reported healthy recently")

    send = sub.add_parser("send", help="program a message; prints its id")
    send.add_argument("--subaccount", required=True)
    send.add_argument("--channel", required=True, help="sms, whatsapp, webchat or email")
    send.add_argument("--to", required=True, help="recipient: E.164 number, chat id or e-mail address")
    send.add_argument("--body")
    send.add_argument("--template", help="template name (instead of --body)")
    send.add_argument("--var", action="append", type=_variable, default=[], metavar="NAME=VALUE")
    send.add_argument("--at", type=_aware, help="send time, ISO 8601 with offset (default: now)")
    send.add_argument("--reference", help="your reference id (unique per subaccount)")
    send.add_argument("--batch", help="batch id")
    send.add_argument("--file-name")
    send.add_argument("--created-by")
    send.add_argument("--validity", type=_positive_seconds, help="seconds after the send time it may still go")

    status = sub.add_parser("status", help="a message's status and history")
    status.add_argument("id")
    status.add_argument("--json", action="store_true", help="the whole record as JSON")

    cancel = sub.add_parser("cancel", help="cancel a programmed message")
    cancel.add_argument("id")
    cancel.add_argument("--by", help="who cancels (kept in the history)")

    reschedule = sub.add_parser("reschedule", help="move a programmed message to a new time")
    reschedule.add_argument("id")
    reschedule.add_argument("--at", type=_aware, required=True)

    sub.add_parser("sweep", help="run the recovery, hand-over, receipt time-out and retention sweeps once")

    mock = sub.add_parser("mock-provider", help="run the mock HTTP provider (the http provider's contract)")
    mock_server.add_arguments(mock)

    cli_subaccount.add_parser(sub, _aware)
    cli_keys.add_parser(sub)
    cli_ops.add_parser(sub, _aware)

    dev = sub.add_parser(
        "dev", help="try sendq: embedded Redis (unless SENDQ_REDIS_URL), worker, mock provider, HTTP API"
    )
    dev.add_argument("--port", type=_port, default=6399, help="port of the embedded Redis (default 6399)")
    dev.add_argument("--api-port", type=_port, help="port of the HTTP API (default SENDQ_API_PORT, 8000)")

    api = sub.add_parser("api", help="serve the HTTP API (FastAPI on uvicorn; docs at /docs)")
    api.add_argument("--host", help="interface (default SENDQ_API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=_port, help="port (default SENDQ_API_PORT, 8000)")
    api.add_argument("--workers", type=_count, help="API processes sharing the port (default SENDQ_API_WORKERS, 1)")
    return parser


def _print_message(message: Message) -> None:
    print(f"id:        {message.id}")
    print(f"status:    {message.status}" + (f" ({message.reason})" if message.reason else ""))
    print(f"channel:   {message.channel}  to: {message.to}  subaccount: {message.subaccount}")
    if message.reference_id:
        print(f"reference: {message.reference_id}")
    print(
        f"attempts:  {message.attempts}  provider: {message.provider or '-'}  "
        f"provider id: {message.provider_message_id or '-'}"
    )
    print(f"due:       {message.due_at.isoformat()}  valid until: {message.valid_until.isoformat()}")
    if message.segments is not None:
        print(f"segments:  {message.segments}")
    if message.last_error:
        print(f"last error: {message.last_error}")
    print("history:")
    for entry in message.history:
        extra = f"  {entry.reason}" if entry.reason else ""
        detail = f"  ({entry.detail})" if entry.detail else ""
        print(f"  {entry.at.isoformat()}  {entry.status:<12} attempt {entry.attempt}{extra}{detail}")


async def _with_scheduler(settings: Settings, action: Callable[[Any], Awaitable[int]]) -> int:
    from scheduler.enqueue import connect
    from scheduler.intake import Scheduler
    from sendq.store import MessageStore

    arq = await connect(settings, patient=False)
    try:
        store = MessageStore(arq, retention=timedelta(seconds=settings.retention_s))
        return await action(Scheduler(store, arq, settings))
    finally:
        await arq.aclose()


def _cmd_send(settings: Settings, ns: argparse.Namespace) -> int:
    from scheduler.intake import parse_new_message

    data: dict[str, Any] = {
        "subaccount": ns.subaccount,
        "channel": ns.channel,
        "to": ns.to,
        "body": ns.body,
        "template": ns.template,
        "variables": dict(ns.var),
        "send_at": ns.at,
        "reference_id": ns.reference,
        "batch_id": ns.batch,
        "file_name": ns.file_name,
        "created_by": ns.created_by,
        "validity": timedelta(seconds=ns.validity) if ns.validity else None,
    }
    new = parse_new_message({k: v for k, v in data.items() if v is not None and v != {}})

    async def act(scheduler: Any) -> int:
        result = await scheduler.program(new)
        print(result.message.id)
        if not result.created:
            print(f"sendq: reference {new.reference_id!r} already used: this is the existing message", file=sys.stderr)
        return 0

    return asyncio.run(_with_scheduler(settings, act))


def _cmd_status(settings: Settings, ns: argparse.Namespace) -> int:
    async def act(scheduler: Any) -> int:
        message = await scheduler.get(ns.id)
        if ns.json:
            print(message.model_dump_json(indent=2))
        else:
            _print_message(message)
        return 0

    return asyncio.run(_with_scheduler(settings, act))


def _cmd_cancel(settings: Settings, ns: argparse.Namespace) -> int:
    async def act(scheduler: Any) -> int:
        outcome = await scheduler.cancel(ns.id, by=ns.by)
        if outcome.cancelled:
            print(f"cancelled {ns.id}")
            if outcome.maybe_sent:
                print(
                    f"sendq: note: an earlier attempt of {ns.id} timed out; it may have been delivered", file=sys.stderr
                )
            return 0
        print(f"sendq: not cancelled: {ns.id} is {outcome.status}", file=sys.stderr)
        return EXIT_REFUSED

    return asyncio.run(_with_scheduler(settings, act))


def _cmd_reschedule(settings: Settings, ns: argparse.Namespace) -> int:
    async def act(scheduler: Any) -> int:
        message = await scheduler.reschedule(ns.id, ns.at)
        print(f"{message.id} programmed for {message.due_at.isoformat()}")
        return 0

    return asyncio.run(_with_scheduler(settings, act))


def _cmd_sweep(settings: Settings, ns: argparse.Namespace) -> int:
    from scheduler.sweeps import run_sweeps
    from sendq.message import utcnow

    async def act(scheduler: Any) -> int:
        report = await run_sweeps(scheduler.store, scheduler.arq, settings, utcnow())
        print(json.dumps({k: v for k, v in dataclasses.asdict(report).items() if k != "skipped"}))
        return 0

    return asyncio.run(_with_scheduler(settings, act))


def _cmd_worker(settings: Settings, ns: argparse.Namespace) -> int:
    from sendq.gc_tuning import tune_collector
    from worker.app import check_health, run_worker

    if ns.check:
        return asyncio.run(check_health(settings))
    tune_collector()
    run_worker(settings)
    return 0


def _cmd_mock_provider(settings: Settings, ns: argparse.Namespace) -> int:
    from providers.mock_server import MockProviderServer, config_from_args

    server = MockProviderServer(config_from_args(ns))
    print(server.banner(), flush=True)
    server.serve_forever()
    return 0


def _cmd_dev(settings: Settings, ns: argparse.Namespace) -> int:
    from sendq.dev import run_dev

    with contextlib.suppress(KeyboardInterrupt):
        run_dev(settings, port=ns.port, api_port=ns.api_port)
    return 0


def _cmd_api(settings: Settings, ns: argparse.Namespace) -> int:
    import uvicorn
    from fastapi import FastAPI

    from providers import check_providers
    from sendq.api.app import create_app
    from sendq.gc_tuning import tune_collector

    if not settings.redis_url:
        raise ConfigurationError("SENDQ_REDIS_URL is not set (or run `sendq dev`, which serves the API too)")
    check_providers(settings)
    workers = ns.workers or settings.api_workers
    # Several processes each build the app from the environment (uvicorn imports the factory in each).
    app: FastAPI | str = "sendq.api.app:app_from_environment"
    if workers == 1:
        app = create_app(settings)
        tune_collector()
    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers,
        host=ns.host or settings.api_host,
        port=ns.port or settings.api_port,
        log_level=settings.log_level.lower(),
    )
    return 0


def _cmd_subaccount(settings: Settings, ns: argparse.Namespace) -> int:
    return cli_subaccount.run(settings, ns, _with_scheduler)


def _cmd_keys(settings: Settings, ns: argparse.Namespace) -> int:
    return cli_keys.run(settings, ns, _with_scheduler)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "subaccount": _cmd_subaccount,
    "keys": _cmd_keys,
    "api": _cmd_api,
    **cli_ops.commands(_with_scheduler),
    "worker": _cmd_worker,
    "send": _cmd_send,
    "status": _cmd_status,
    "cancel": _cmd_cancel,
    "reschedule": _cmd_reschedule,
    "sweep": _cmd_sweep,
    "mock-provider": _cmd_mock_provider,
    "dev": _cmd_dev,
}


#: model field -> the `sendq send` flag that sets it, so errors name what the user typed
_SEND_FLAGS = {
    "send_at": "--at",
    "at": "--at",
    "reference_id": "--reference",
    "batch_id": "--batch",
    "variables": "--var",
}


def _fail(message: str, code: int) -> int:
    print(f"sendq: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sendq`` console script."""
    ns = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "SENDQ_" + "__".join(str(p) for p in err["loc"]).upper()
        return _fail(f"{field}: {err['msg'].removeprefix('Value error, ')}", EXIT_USAGE)
    except SettingsError as exc:
        return _fail(f"cannot read the SENDQ_* settings: {exc}", EXIT_USAGE)
    # Long-running commands log at the configured level; one-shot commands only speak up for problems.
    quiet = ns.command not in ("worker", "dev", "api")
    configure_logging(settings.model_copy(update={"log_level": "WARNING"}) if quiet else settings)
    try:
        return COMMANDS[ns.command](settings, ns)
    except InvalidInput as exc:
        if exc.field == "message":  # a rule about the message as a whole (e.g. body or template)
            return _fail(exc.reason, EXIT_USAGE)
        flag = _SEND_FLAGS.get(exc.field, "--" + exc.field.replace("_", "-")) if ns.command == "send" else exc.field
        return _fail(f"{flag}: {exc.reason}", EXIT_USAGE)
    except MessageNotFound as exc:
        return _fail(str(exc), EXIT_REFUSED)
    except ConfigurationError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except SendqError as exc:
        return _fail(str(exc), EXIT_REFUSED)
    except BrokenPipeError:
        # The reader went away (`sendq status ID | head`): not a Redis problem. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_REFUSED
    except (RedisError, OSError) as exc:
        return _fail(f"cannot reach Redis at {settings.redis_url}: {exc}", EXIT_REFUSED)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
