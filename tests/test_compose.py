"""docker-compose.yml: no Docker engine runs here, so check that its commands and variables exist."""

from pathlib import Path
from typing import Any

import yaml

from sendq.cli import build_parser
from sendq.settings import Settings
from worker.redis_policy import RECOMMENDED_LISTPACK_VALUE

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_services_present() -> None:
    """Redis, the worker and the mock provider are there; the worker waits for a healthy Redis."""
    services = compose()["services"]
    assert {"redis", "worker", "mock-provider", "api"} <= set(services)
    assert services["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_redis_is_durable_and_never_evicts() -> None:
    """Redis runs with AOF and noeviction, as the worker requires."""
    cmd = compose()["services"]["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"


def test_redis_keeps_message_records_compact() -> None:
    """Redis keeps records with bodies up to the recommended length as compact hashes."""
    cmd = compose()["services"]["redis"]["command"]
    assert int(cmd[cmd.index("--hash-max-listpack-value") + 1]) >= RECOMMENDED_LISTPACK_VALUE


def test_commands_parse() -> None:
    """Every sendq command in the file is accepted by the real CLI parser."""
    parser = build_parser()
    services = compose()["services"]
    commands = [services[name]["command"] for name in ("worker", "mock-provider", "api")]
    commands.append(services["worker"]["healthcheck"]["test"][1:])
    for cmd in commands:
        assert cmd[0] == "sendq"
        parser.parse_args(cmd[1:])


def test_environment_variables_are_settings() -> None:
    """Every SENDQ_* variable set in the file is a real setting, and the values load."""
    env: dict[str, str] = {}
    for service in compose()["services"].values():
        env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    sendq_vars = {k: v for k, v in env.items() if k.startswith("SENDQ_")}
    assert sendq_vars
    fields = set(Settings.model_fields)
    for name in sendq_vars:
        top = name.removeprefix("SENDQ_").split("__")[0].lower()
        assert top in fields, name
    settings = Settings(_env_file=None, **_as_kwargs(sendq_vars))
    assert settings.provider == "http" and settings.http.url and settings.public_url
    # the mock provider signs receipts with the secret the API verifies them with
    provider_cmd = compose()["services"]["mock-provider"]["command"]
    secret = settings.http.webhook_secret
    assert secret is not None and provider_cmd[provider_cmd.index("--webhook-secret") + 1] == secret.get_secret_value()


def _as_kwargs(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        parts = name.removeprefix("SENDQ_").lower().split("__")
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return out


def test_env_example_is_valid() -> None:
    """Every variable in .env.example is a real setting and the file loads."""
    lines = [ln for ln in (ROOT / ".env.example").read_text().splitlines() if ln and not ln.startswith("#")]
    env = dict(ln.split("=", 1) for ln in lines)
    fields = set(Settings.model_fields)
    assert all(name.removeprefix("SENDQ_").split("__")[0].lower() in fields for name in env)
    assert Settings(_env_file=None, **_as_kwargs(env)).redis_url == env["SENDQ_REDIS_URL"]
