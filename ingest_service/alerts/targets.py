"""Where a webhook may be sent: https to a public address only, checked on the address connected to.

The defence against server-side request forgery (a seller's URL making this service call its own
network): a URL must be ``https`` with no credentials in it; a literal address must be public; a host
name is resolved once, every address it resolves to must be public, and the connection goes to those
very addresses (aiohttp asks :class:`CheckedResolver` and connects to what it answers, so a second
lookup that could answer differently never happens). Redirects are not followed (the sender records a
3xx as a failure). ``ALERT_WEBHOOK_ALLOWED_NETWORKS`` names networks allowed although not public (an
internal receiver; the tests' loopback receiver).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(Exception):
    """The webhook URL, or an address its host resolves to, may not be sent to; the message says why."""


class HostResolver(Protocol):
    """Turns a host name into the addresses to connect to (the system's resolver in production)."""

    async def resolve(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``), TCP addresses of both families."""

    async def resolve(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except socket.gaierror as error:
            raise TargetRefused(f"cannot resolve {host!r}: {error.strerror}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A checked URL's parts: ``host`` without brackets, the port to connect to."""

    url: str
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Which addresses webhooks may reach: public ones, and those in ``allowed_networks``."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, networks: Sequence[str]) -> TargetPolicy:
        """From CIDR texts (a bare address is one host).

        Raises:
            ValueError: a text is not an address or a network.
        """
        return cls(
            tuple(ipaddress.ip_network(each.strip(), strict=False) for each in networks if each.strip())
        )

    def check_url(self, url: str) -> WebhookTarget:
        """The URL's target, if its form may be sent to (a literal address checked here too).

        Raises:
            TargetRefused: not https, credentials in it, no host, a bad port, or a literal address
                that is not public and not allowed.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as error:
            raise TargetRefused(f"not a URL: {error}") from None
        if parts.scheme != "https":
            raise TargetRefused("webhook URLs must use https")
        if parts.username is not None or parts.password is not None:
            raise TargetRefused("webhook URLs may not hold credentials")
        host = parts.hostname
        if not host:
            raise TargetRefused("webhook URL has no host")
        if parts.fragment:
            raise TargetRefused("webhook URLs may not hold a fragment")
        literal = _literal_address(host)
        if literal is not None:
            self.check_address(literal)
        return WebhookTarget(url, host, port or 443)

    def check_address(self, address: IPAddress) -> None:
        """Raises :class:`TargetRefused` unless ``address`` is public or in an allowed network."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # ::ffff:10.0.0.1 reaches 10.0.0.1: judged as the IPv4 address it carries.
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed_networks):
            return
        if not address.is_global or address.is_multicast:
            raise TargetRefused(f"{address} is not a public address ({_kind(address)})")


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _kind(address: IPAddress) -> str:
    for name in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(address, f"is_{name}"):
            return name.replace("_", "-")
    return "not global"


class CheckedResolver(AbstractResolver):
    """aiohttp's resolver for the webhook client: resolves with ``resolver``, refuses unless every
    address is allowed by ``policy``, and answers the checked addresses, which aiohttp connects to.

    Every address must pass, not just one: a name answering both a public and a private address
    would otherwise let the connection land on the private one.
    """

    def __init__(self, policy: TargetPolicy, resolver: HostResolver) -> None:
        self._policy = policy
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        texts = await self._resolver.resolve(host, port)
        if not texts:
            raise TargetRefused(f"{host!r} resolves to no address")
        results: list[ResolveResult] = []
        for text in texts:
            address = ipaddress.ip_address(text)
            try:
                self._policy.check_address(address)
            except TargetRefused as refused:
                raise TargetRefused(f"{host!r} resolves to {refused}") from None
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                    proto=socket.IPPROTO_TCP,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        return results

    async def close(self) -> None:
        return None
