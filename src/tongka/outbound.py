"""Where the server may send requests to a URL that came from outside (today: the Nchf `notifyUri`).

A URL the network gives is not trusted: the server would otherwise POST wherever it is told,
cloud metadata (169.254.169.254) or a database on the private network included. So:

- http or https only, a host, no user name or password, at most `MAX_URI` characters;
- the host must be allowed by `TONGKA_NF_NOTIFY_ALLOW`, a comma-separated list of network
  function host names (`smf1.operator.net`, or `.nf.operator.net` for every name under it)
  and networks (`10.20.0.0/16`, `2001:db8:5::/48`, an address alone):
  an address is allowed when it is in a listed network; a name when every address it
  resolves to is in a listed network, or, for a listed name, is a public unicast address.
  Never a private, loopback, link-local, multicast, reserved or unspecified address unless its
  network is listed;
- the name is resolved when the request is sent, every address checked, and the request made to
  the address checked (so a second answer of the DNS cannot send it elsewhere); redirects are
  not followed.

In dev (`TONGKA_ENV=dev`: `make run`, the tests) loopback is allowed as well, for the simulated
networks on 127.0.0.1; production allows only what the setting lists, and nothing when it is
empty. A URI that can never be allowed (wrong scheme, an address literal not allowed) is
refused already when the network gives it (`refusal`, no DNS on the charging path).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tongka.config import Settings

MAX_URI = 2048  # the column that keeps a session's notifyUri
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(ValueError):
    """The URL may not be called: the reason, in English (logged and answered to the network)."""


@dataclass(frozen=True)
class Allowed:
    names: frozenset[str]  # exact host names; ".example.net" for every name under example.net
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, text: str, *, loopback: bool = False) -> Allowed:
        names: set[str] = set()
        networks: list[Network] = list(LOOPBACK) if loopback else []
        for entry in (e.strip().lower().rstrip(".") for e in text.split(",")):
            if not entry:
                continue
            if entry.startswith("*."):
                entry = entry[1:]
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if not all(
                part.isascii() and (part.replace("-", "").isalnum())
                for part in entry.removeprefix(".").split(".")
            ):
                raise ValueError(f"{entry!r} is neither a host name nor a network (10.20.0.0/16)")
            names.add(entry)
        return cls(frozenset(names), tuple(networks))

    def names_host(self, host: str) -> bool:
        return host in self.names or any(n.startswith(".") and host.endswith(n) for n in self.names)

    def admits(self, address: Address, *, listed_name: bool) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.networks):
            return True
        return listed_name and address.is_global and not address.is_multicast


@cache
def tls() -> ssl.SSLContext:
    """How the server's own clients to the outside (the payment providers' APIs) check TLS: the
    CA bundle httpx trusts, read once a process; reading it takes 60 ms, which every app made
    (each test's too) spent again. Shared by their clients; nothing changes it after."""
    return httpx.create_ssl_context()


def client() -> httpx.Client:
    """A client for the payment providers' APIs."""
    return httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), verify=tls())


@cache
def _allowed(text: str, dev: bool) -> Allowed:
    return Allowed.parse(text, loopback=dev)


def allowed(settings: Settings) -> Allowed:
    return _allowed(settings.nf_notify_allow, settings.dev)


@dataclass(frozen=True)
class Target:
    """A URL checked, and the address to connect to."""

    urls: list[
        httpx.URL
    ]  # the URL with each address checked in place of the name, in the resolver's order
    name: (
        str | None
    )  # the name, for the Host header and TLS (SNI and certificate); None for an address


def _split(uri: str) -> tuple[httpx.URL, str, Address | None]:
    if len(uri) > MAX_URI:
        raise Refused(f"longer than {MAX_URI} characters")
    try:
        url = httpx.URL(uri)
    except (httpx.InvalidURL, ValueError) as error:
        raise Refused(f"not a URL: {error}") from None
    if url.scheme not in ("http", "https"):
        raise Refused("not an http or https URL")
    if not url.host:
        raise Refused("no host")
    if url.userinfo:
        raise Refused("a user name or password in the URL")
    host = url.host.lower().rstrip(".")
    try:
        address: Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None:
        try:
            host.encode("idna")  # what the resolver will do: an empty or overlong label fails there
        except UnicodeError:
            raise Refused(f"{host} is not a valid host name") from None
    return url, host, address


@lru_cache(maxsize=4096)  # on the charging path: a session's notifyUri comes again with each update
def refusal(uri: str, allowed: Allowed) -> str | None:
    """Why `uri` can never be called, judged without DNS; None when it may be (then `resolve` decides)."""
    try:
        _url, _host, address = _split(uri)
    except Refused as error:
        return str(error)
    if address is not None and not allowed.admits(address, listed_name=False):
        return f"the address {address} is not an allowed network function address"
    return None


def resolve(uri: str, allowed: Allowed) -> Target:
    """The checked target of `uri`: every address its host resolves to allowed. Raises `Refused`, or
    OSError when the name cannot be resolved now (worth trying again later)."""
    url, host, literal = _split(uri)
    listed = allowed.names_host(host)
    if literal is not None:
        addresses: list[Address] = [literal]
    else:
        infos = socket.getaddrinfo(
            host, url.port or (443 if url.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
        addresses = list(
            dict.fromkeys(ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos)
        )
    for address in addresses:
        if not allowed.admits(address, listed_name=listed):
            raise Refused(f"{host} is at {address}, not an allowed network function address")
    if literal is not None:
        return Target([url], None)
    return Target([url.copy_with(host=str(a)) for a in addresses], host)


def post(http: httpx.Client, target: Target, body: object, *, timeout: float) -> httpx.Response:
    """POST to the address checked, named as the URL names it; redirects are answers, not followed."""
    headers: dict[str, str] = {}
    extensions: dict[str, str] = {}
    first = target.urls[0]
    if target.name is not None:
        headers["Host"] = target.name if first.port is None else f"{target.name}:{first.port}"
        if first.scheme == "https":
            extensions["sni_hostname"] = (
                target.name
            )  # and the certificate is checked against the name
    for url in target.urls[:-1]:  # an address that does not answer: the next (IPv6 then IPv4, say)
        try:
            return http.post(
                url,
                json=body,
                headers=headers,
                timeout=timeout,
                follow_redirects=False,
                extensions=extensions,
            )
        except httpx.ConnectError:
            continue
    return http.post(
        target.urls[-1],
        json=body,
        headers=headers,
        timeout=timeout,
        follow_redirects=False,
        extensions=extensions,
    )
