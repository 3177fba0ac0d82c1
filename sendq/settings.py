"""Settings, read from ``SENDQ_*`` environment variables (nested with ``__``). No import-time singleton."""

from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sendq.content import DEFAULT_RESTRICTED_TERMS, normalise_term
from sendq.provider_settings import (
    InfobipSettings,
    ProviderName,
    ProviderRoute,
    SinchSettings,
    TwilioSettings,
    UnifonicSettings,
)


class MockProviderSettings(BaseModel):
    """The in-process mock provider (for ``sendq dev`` and unit tests)."""

    latency_ms: float = Field(0.0, ge=0)
    fail_rate: float = Field(0.0, ge=0, le=1)
    seed: int | None = None


class HttpProviderSettings(BaseModel):
    """The generic JSON-over-HTTP provider."""

    url: str | None = None
    timeout_s: float = Field(10.0, gt=0)
    auth_token: str | None = None
    #: verifies the provider's signed receipt and inbound callbacks (Standard Webhooks); unset: callbacks refused
    webhook_secret: SecretStr | None = None


class Settings(BaseSettings):
    """Everything sendq reads from its environment; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SENDQ_", env_nested_delimiter="__", extra="ignore")

    #: Redis to use; unset means `sendq dev` embeds a server and other commands refuse to start
    redis_url: str | None = None
    #: arq queue (a sorted set); every worker of a deployment serves the same one
    queue_name: str = "sendq:queue"

    #: the default provider, for every (subaccount, channel) no route names
    provider: ProviderName = "mock"
    #: which provider serves which subaccount and channel (JSON list in the environment)
    routes: tuple[ProviderRoute, ...] = ()
    mock: MockProviderSettings = Field(default_factory=MockProviderSettings)
    http: HttpProviderSettings = Field(default_factory=HttpProviderSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    sinch: SinchSettings = Field(default_factory=SinchSettings)
    unifonic: UnifonicSettings = Field(default_factory=UnifonicSettings)
    infobip: InfobipSettings = Field(default_factory=InfobipSettings)
    #: the public base URL of `sendq api` (e.g. https://sendq.example.com): providers are given
    #: ``{public_url}/v1/receipts/{provider}`` as their status callback, and Twilio signs that exact URL
    public_url: str | None = None

    max_attempts: int = Field(5, ge=1, le=100)
    backoff_base_s: float = Field(2.0, gt=0)
    backoff_cap_s: float = Field(600.0, gt=0)
    #: default validity: how long after its send time a message may still be sent
    validity_s: float = Field(48 * 3600.0, gt=0)
    #: how far ahead a message may be programmed
    max_schedule_ahead_s: float = Field(366 * 86400.0, gt=0)
    #: how long final messages (sent, error, cancelled, receipts) are kept
    retention_s: float = Field(30 * 86400.0, gt=0)

    worker_concurrency: int = Field(50, ge=1)
    #: arq poll interval: pick-up latency is about half of it
    poll_delay_s: float = Field(0.05, gt=0)
    job_timeout_s: float = Field(60.0, gt=0)
    #: on SIGTERM, let running sends finish for this long before cancelling them
    job_completion_wait_s: int = Field(30, ge=0)
    #: a claim outlives job_timeout_s by this much; past it the recovery sweep takes the message back
    lease_margin_s: float = Field(10.0, gt=0)
    #: seconds between sweeps; must divide 60 (arq cron runs on second marks)
    sweep_interval_s: int = Field(5, ge=1, le=60)
    #: a waiting message gets its arq job when it is due within this many seconds (earlier ones wait in the store)
    enqueue_ahead_s: float = Field(60.0, gt=0)
    #: at most about this many dispatch jobs wait in arq's queue; more waiting messages are handed over as it drains
    queue_max_jobs: int = Field(10_000, ge=1)
    health_check_interval_s: int = Field(30, ge=1)
    #: refuse to start a worker on a Redis whose maxmemory-policy can evict keys
    require_noeviction: bool = True

    #: terms no subaccount may send until an operator enables them for it (JSON list in the environment)
    restricted_terms: tuple[str, ...] = DEFAULT_RESTRICTED_TERMS
    #: links need their domain enabled for the subaccount (seed 001: "some words or links need to be enabled")
    links_restricted: bool = True

    #: `sendq api`: where it listens, and its request limits (each refused with a 413/422 problem document)
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    #: `sendq api`: processes sharing the port (intake is CPU-bound: about one per core)
    api_workers: int = Field(1, ge=1, le=64)
    api_max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    api_max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    api_max_batch_items: int = Field(10_000, ge=1)
    api_max_csv_rows: int = Field(100_000, ge=1)

    log_level: str = "INFO"
    #: None chooses by terminal: console on a TTY, JSON otherwise
    log_json: bool | None = None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL, e.g. redis://localhost:6379/0")
        try:
            parts.port  # noqa: B018 (urlsplit checks the port only when asked)
        except ValueError as exc:
            raise ValueError(f"invalid port ({exc})") from None
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("has no host, e.g. redis://localhost:6379/0")
        return value

    @field_validator("restricted_terms")
    @classmethod
    def _terms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for term in value:
            normalise_term(term)  # a term that normalises to nothing would match nothing: say so now
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if 60 % self.sweep_interval_s:
            raise ValueError("sweep_interval_s must divide 60")
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be at least backoff_base_s")
        if self.provider == "http" and not self.http.url:
            raise ValueError("SENDQ_HTTP__URL is required when SENDQ_PROVIDER=http")
        return self

    @property
    def lease_s(self) -> float:
        return self.job_timeout_s + self.lease_margin_s


def load_settings() -> Settings:
    """Read settings from the environment (called by entry points, never at import)."""
    return Settings()
