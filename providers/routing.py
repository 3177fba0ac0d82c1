"""Which provider serves a message: the most specific ``SENDQ_ROUTES`` entry for its (subaccount, channel),
else the default provider. One adapter instance per (provider, sender), built once per process.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from providers.base import Provider, StatusLookup, WebhookParser
from sendq.channel import Channel
from sendq.provider_settings import ProviderRoute

#: builds the adapter for (provider name, sender override); raises ConfigurationError on missing settings
Factory = Callable[[str, str | None], Provider]


def _specificity(route: ProviderRoute) -> int:
    return (route.subaccount != "*") * 2 + (route.channel != "*")


@dataclass
class Providers:
    """The provider instances of one process, and the routing between them."""

    default: str
    routes: tuple[ProviderRoute, ...]
    factory: Factory
    _built: dict[tuple[str, str | None], Provider] = field(default_factory=dict)

    @classmethod
    def single(cls, provider: Provider) -> "Providers":
        """Every message to ``provider`` (tests, ``sendq dev``)."""
        return cls(default=provider.name, routes=(), factory=lambda _name, _sender: provider)

    def build_all(self) -> None:
        """Build every configured adapter now, so a missing credential stops the process at start-up."""
        self.get(self.default)
        for route in self.routes:
            self.get(route.provider, route.sender)

    def get(self, name: str, sender: str | None = None) -> Provider:
        key = (name, sender)
        if key not in self._built:
            self._built[key] = self.factory(name, sender)
        return self._built[key]

    def route(self, subaccount: str, channel: Channel) -> ProviderRoute | None:
        matching = [r for r in self.routes if r.subaccount in ("*", subaccount) and r.channel in ("*", channel.value)]
        return max(matching, key=_specificity, default=None)

    def for_message(self, subaccount: str, channel: Channel) -> Provider:
        route = self.route(subaccount, channel)
        return self.get(self.default) if route is None else self.get(route.provider, route.sender)

    def names(self) -> set[str]:
        return {self.default, *(r.provider for r in self.routes)}

    def webhook(self, name: str) -> WebhookParser | None:
        """The callback parser of a configured provider, or None (unknown, or it has no callbacks)."""
        if name not in self.names():
            return None
        provider = self.get(name, self._sender_of(name))
        return provider if isinstance(provider, WebhookParser) else None

    def lookup(self, name: str | None) -> StatusLookup | None:
        """The status query of a configured provider, or None when it has none."""
        if name is None or name not in self.names():
            return None
        provider = self.get(name, self._sender_of(name))
        return provider if isinstance(provider, StatusLookup) else None

    def _sender_of(self, name: str) -> str | None:
        # Any instance of a provider verifies and parses callbacks the same way; prefer one already built.
        for built_name, sender in self._built:
            if built_name == name:
                return sender
        return None

    def inbound_subaccounts(self, provider: str, to: str | None) -> list[str]:
        """Subaccounts whose route on ``provider`` has ``to`` as its sender (an inbound message's recipient)."""
        if to is None:
            return []
        wanted = _address(to)
        return sorted(
            {
                r.subaccount
                for r in self.routes
                if r.provider == provider and r.subaccount != "*" and r.sender and _address(r.sender) == wanted
            }
        )

    async def aclose(self) -> None:
        for provider in _unique(self._built.values()):
            await provider.aclose()


def _address(value: str) -> str:
    """A sender compared loosely: without a ``whatsapp:`` prefix, ``+``, spaces and dashes."""
    value = value.strip().lower().removeprefix("whatsapp:")
    return "".join(c for c in value if c not in "+ -")


def _unique(items: Iterable[Provider]) -> list[Provider]:
    seen: list[Provider] = []
    for item in items:
        if all(item is not s for s in seen):
            seen.append(item)
    return seen
