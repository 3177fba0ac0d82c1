"""Settings of the real channel providers and of the routing that picks one per (subaccount, channel).

Every provider reads its credentials and base URL from here (``SENDQ_TWILIO__AUTH_TOKEN``, ...). Base URLs are
settings so that tests (and staging) can point an adapter at a local server that follows the provider's contract.
"""

from typing import Literal

from pydantic import BaseModel, Field, SecretStr

#: every provider name sendq knows
ProviderName = Literal["mock", "http", "twilio", "sinch", "unifonic", "infobip"]


class WebhookCredentials(BaseModel):
    """Basic-auth credentials a provider without a signature scheme must present on its callbacks.

    Set them in the callback URL the provider calls (``https://user:password@host/v1/receipts/sinch``) or in the
    provider's webhook configuration. Unset: that provider's callbacks are refused (fail closed).
    """

    webhook_user: str | None = None
    webhook_password: SecretStr | None = None


class TwilioSettings(BaseModel):
    """Twilio Programmable Messaging (SMS and WhatsApp). Callbacks are verified with ``X-Twilio-Signature``."""

    base_url: str = "https://api.twilio.com"
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    #: send through a Messaging Service (sender pool) instead of a fixed From
    messaging_service_sid: str | None = None
    #: From for SMS (E.164 or an alphanumeric sender id)
    sms_from: str | None = None
    #: From for WhatsApp (E.164; the ``whatsapp:`` prefix is added)
    whatsapp_from: str | None = None
    timeout_s: float = Field(10.0, gt=0)


class SinchSettings(WebhookCredentials):
    """Sinch (India) WhatsApp and SMS, with the delivery-report format of seed 004."""

    #: Sinch India WhatsApp API (legacy, formerly ACL Mobile); ``/pull-platform-receiver/wa/messages`` is appended
    base_url: str = "https://push.aclwhatsapp.com"
    #: Sinch India WhatsApp API credentials, sent as the ``user`` and ``pass`` headers
    whatsapp_user: str | None = None
    whatsapp_password: SecretStr | None = None
    #: language code of the approved WhatsApp templates (``langCode``), e.g. ``en`` or ``hi``
    template_language: str = "en"
    #: UTC offset of the ``del_time`` of WhatsApp delivery reports (``DD/MM/YYYY HH:MM:SS``, no zone): IST
    report_utc_offset: str = Field("+05:30", pattern=r"^[+-]\d{2}:\d{2}$")
    #: Sinch SMS REST API (``/xms/v1/{service_plan_id}/batches``): region host, service plan and its API token
    sms_base_url: str = "https://us.sms.api.sinch.com"
    service_plan_id: str | None = None
    api_token: SecretStr | None = None
    #: our WhatsApp / SMS sender (E.164 or sender id)
    sender: str | None = None
    timeout_s: float = Field(10.0, gt=0)


class UnifonicSettings(WebhookCredentials):
    """Unifonic WhatsApp (conversation API): events of seed 002, status API by message id and by reference id."""

    base_url: str = "https://apis.unifonic.com"
    public_id: str | None = None
    secret: SecretStr | None = None
    #: our WhatsApp sender
    sender: str | None = None
    #: language code of the approved WhatsApp templates (``content.language.code``), e.g. ``en`` or ``ar``
    template_language: str = "en"
    timeout_s: float = Field(10.0, gt=0)


class InfobipSettings(WebhookCredentials):
    """Infobip SMS: client-set message id, ``notifyUrl``, the ``permanent`` error flag."""

    base_url: str = "https://api.infobip.com"
    api_key: SecretStr | None = None
    #: our SMS sender (E.164 or an alphanumeric sender id)
    sender: str | None = None
    timeout_s: float = Field(10.0, gt=0)


class ProviderRoute(BaseModel):
    """Which provider serves a subaccount's channel. ``*`` matches any; the most specific route wins."""

    subaccount: str = "*"
    channel: str = "*"
    provider: ProviderName
    #: our address on that provider (overrides the provider's default sender); inbound messages to it are
    #: recorded for this route's subaccount
    sender: str | None = None
