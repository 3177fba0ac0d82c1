"""A subaccount's rules: when it may send, on which channels, how long its messages may be, and how it treats
a message whose time falls outside its windows. Stored as one JSON document per subaccount (``sendq.subaccounts``).

A subaccount nobody configured gets ``SubaccountRules()``: no window restriction, every channel, the default caps.
"""

from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

from sendq.channel import Channel
from sendq.windows import SendingWindows


class BlockedTimePolicy(StrEnum):
    """What happens to a message whose send time is outside the allowed windows (status ``blocked_time``)."""

    #: it stays ``blocked_time`` until an operator reschedules or cancels it
    HOLD = "hold"
    #: it shows as ``blocked_time`` with its release time, and goes out at the next allowed instant by itself
    DEFER = "defer"


#: Twilio advises at most 10 segments and bills per segment; a cap stops one long text from costing a fortune.
DEFAULT_MAX_SMS_SEGMENTS: Final = 10
#: how long to wait for a final receipt before a sent message becomes ``timed_out`` (used by the receipts sweep)
DEFAULT_RECEIPT_TIMEOUT_S: Final = 72 * 3600


class SubaccountRules(BaseModel):
    """The rules of one subaccount; every field has a default so a partial update keeps the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    windows: SendingWindows = Field(default_factory=SendingWindows)
    blocked_time_policy: BlockedTimePolicy = BlockedTimePolicy.DEFER
    receipt_timeout_s: Annotated[int, Field(ge=60, le=30 * 86400)] = DEFAULT_RECEIPT_TIMEOUT_S
    max_sms_segments: Annotated[int, Field(ge=1, le=255)] = DEFAULT_MAX_SMS_SEGMENTS
    allowed_channels: frozenset[Channel] = frozenset(Channel)

    def describe(self) -> list[str]:
        """Readable lines for ``sendq subaccount show``."""
        return [
            f"timezone:            {self.windows.timezone}",
            f"windows:             {self.windows.describe()}",
            f"blocked time policy: {self.blocked_time_policy}",
            f"receipt timeout:     {self.receipt_timeout_s} s",
            f"max SMS segments:    {self.max_sms_segments}",
            f"channels:            {', '.join(sorted(self.allowed_channels))}",
        ]
