"""WhatsApp template parameters, shared by the adapters whose APIs take them positionally (Sinch, Unifonic)."""

from collections.abc import Mapping

from sendq.errors import PermanentProviderError


def positional_parameters(variables: Mapping[str, str], *, provider: str) -> list[str]:
    """The template's positional parameters: ``variables`` keyed ``"1"`` to ``"n"``, in that order.

    Raises:
        PermanentProviderError: other keys (``template_variables``); the message cannot go as it is.
    """
    keys = [str(i) for i in range(1, len(variables) + 1)]
    if set(variables) != set(keys):
        raise PermanentProviderError(
            f"template variables must be keyed 1..{len(variables)} (WhatsApp parameters are positional), "
            f"got {sorted(variables)}",
            provider=provider,
            code="template_variables",
        )
    return [variables[key] for key in keys]
