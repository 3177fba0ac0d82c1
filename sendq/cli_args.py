"""argparse value types shared by the ``sendq`` subcommand modules: a bad value is one line and exit 2."""

import argparse

from pydantic import TypeAdapter, ValidationError

from sendq.message import SubaccountId

_SUBACCOUNT = TypeAdapter(SubaccountId)


def subaccount_id(value: str) -> str:
    try:
        return _SUBACCOUNT.validate_python(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a subaccount id (letters, digits, '_', '.', '-'; up to 64)"
        ) from None
