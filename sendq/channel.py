"""The channels a message can go out on."""

from enum import StrEnum


class Channel(StrEnum):
    """The channels a message can go out on."""

    #: text message to an E.164 number
    SMS = "sms"
    #: WhatsApp message (free-form or template)
    WHATSAPP = "whatsapp"
    #: web chat / in-app chat
    WEBCHAT = "webchat"
    #: e-mail
    EMAIL = "email"


#: Channels whose providers report "read": a delivered message there still waits for its read receipt, and
#: times out without one (on the others "delivered" is the last word).
READ_RECEIPT_CHANNELS = frozenset({Channel.WHATSAPP, Channel.WEBCHAT})
