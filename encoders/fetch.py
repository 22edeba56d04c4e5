"""Fetching media by URL without letting course content reach what it should not (SSRF).

A URL is fetched only when its host is on the allow-list (``media_hosts``), and only from a
public address: the host is resolved when the connection is made, and refused if any of its
addresses is loopback, private, link-local, shared, reserved or multicast, unless it lies in a
network the operator allowed (``media_networks``). Cloud metadata addresses are refused always.
The connection then goes to the address that was checked, so a name cannot resolve to another
one in between (DNS rebinding). Every redirect is checked the same way. Environment proxies are
ignored, one deadline covers the whole fetch, and bodies are cut at a size limit.

Errors say only "not allowed" (decided before anything was touched, or an address refused) or
"could not fetch" (whatever else went wrong): never what was found, so the service cannot be
used to scan ports or tell which hosts exist.

>>> policy = UrlPolicy(["media.example.org", "*.cdn.example.org", "127.0.0.1:8080"], [])
>>> policy.check("https://media.example.org/a.png"), policy.check("https://img.cdn.example.org/b.png")
(None, None)
>>> policy.check("https://media.example.org:8443/a.png")
Traceback (most recent call last):
...
encoders.fetch.MediaNotAllowed: url not allowed: its host is not on the media host allow-list
>>> policy.allows_address(ipaddress.ip_address("169.254.169.254")), policy.allows_address(ipaddress.ip_address("93.184.215.14"))
(False, True)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable, Sequence
from urllib.parse import urljoin, urlsplit

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Redirects followed per fetch, each checked like the first URL.
MAX_REDIRECTS = 3
REDIRECTS = {301, 302, 303, 307, 308}
DEFAULT_PORTS = {"http": 80, "https": 443}
#: Instance metadata services (AWS, GCP, Azure, OpenStack; AWS's IPv6; Alibaba; AWS ECS task
#: metadata): refused even inside an allowed network.
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32", "169.254.170.2/32")
)


class MediaError(ValueError):
    """Media that cannot be used; the text says why without saying what was found (HTTP 422)."""


class MediaNotAllowed(MediaError):
    """Media whose source the settings do not allow: nothing was read and no connection made for it."""


class FetchFailed(MediaError):
    """Media that could not be fetched or read, for whatever reason."""

    def __init__(self) -> None:
        super().__init__("could not fetch the media")


class UrlPolicy:
    """Which URLs and which addresses media may come from."""

    def __init__(self, hosts: Iterable[str], networks: Iterable[IPNetwork]) -> None:
        self.hosts = [host.lower() for host in hosts]
        self.networks = list(networks)

    def check(self, url: str) -> None:
        """Raise :class:`MediaNotAllowed` unless ``url``'s scheme, host and port are allowed."""
        if not self.hosts:
            raise MediaNotAllowed("url not allowed: no media host is allowed (COURSESTREAM_ENCODER_MEDIA_HOSTS)")
        try:
            parts = urlsplit(url)
            port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            raise MediaNotAllowed("url not allowed: not a valid URL") from None
        host = (parts.hostname or "").lower()
        if parts.scheme not in DEFAULT_PORTS or not host or parts.username is not None or not host.isascii():
            raise MediaNotAllowed("url not allowed: only http(s) URLs to a named host, without credentials")
        if not any(_matches(entry, host, port, DEFAULT_PORTS[parts.scheme]) for entry in self.hosts):
            raise MediaNotAllowed("url not allowed: its host is not on the media host allow-list")

    def allows_address(self, address: IPAddress) -> bool:
        """Whether a connection may go to ``address``: public, or in an allowed network; never metadata."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in METADATA_NETWORKS):
            return False
        if address.is_multicast or address.is_unspecified:
            return False
        return address.is_global or any(address in network for network in self.networks)


def _matches(entry: str, host: str, port: int | None, default_port: int) -> bool:
    name, _, entry_port = entry.partition(":")
    if port != (int(entry_port) if entry_port else default_port):
        return False
    if name.startswith("*."):
        return host.endswith(name[1:])
    return host == name


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows: the name is
    resolved here, every address it has is checked, and the connection goes to a checked one."""

    def __init__(self, policy: UrlPolicy, backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.backend = backend or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise FetchFailed() from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].partition("%")[0]) for info in found))
        if not addresses or not all(self.policy.allows_address(address) for address in addresses):
            raise MediaNotAllowed("url not allowed: its host resolves to an address that is not public")
        for address in addresses:  # each checked; the next if one does not answer
            try:
                return await self.backend.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue
        raise FetchFailed()

    async def connect_unix_socket(self, *args: object, **kwargs: object) -> httpcore.AsyncNetworkStream:
        raise MediaNotAllowed("url not allowed: not a TCP address")

    async def sleep(self, seconds: float) -> None:
        await self.backend.sleep(seconds)


class UrlFetcher:
    """Fetches allowed URLs (see the module's docstring); ``async with`` closes its connections."""

    def __init__(self, policy: UrlPolicy, deadline_s: float, ssl_context: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.deadline_s = deadline_s
        # No proxy: httpcore never reads the environment, so HTTP(S)_PROXY cannot route around the checks.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=CheckedBackend(policy), max_connections=32
        )

    async def __aenter__(self) -> UrlFetcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._pool.aclose()

    async def fetch(self, url: str, max_bytes: int) -> bytes:
        """The body at ``url`` (after at most :data:`MAX_REDIRECTS` checked redirects).

        Raises :class:`MediaNotAllowed` for a URL or address the policy refuses, ``OverLimit`` past
        ``max_bytes``, :class:`FetchFailed` for anything else, including the deadline passing.
        """
        try:
            async with asyncio.timeout(self.deadline_s):
                for _ in range(MAX_REDIRECTS + 1):
                    self.policy.check(url)
                    location = await self._get(url, max_bytes)
                    if isinstance(location, bytes):
                        return location
                    url = location
        except MediaError:
            raise
        except Exception:  # the deadline, a refused connection, TLS, a protocol error: all the same to the caller
            raise FetchFailed() from None
        raise FetchFailed()

    async def _get(self, url: str, max_bytes: int) -> bytes | str:
        """The body, or the next URL of a redirect."""
        headers = [(b"Accept-Encoding", b"identity"), (b"User-Agent", b"coursestream-encoder")]
        async with self._pool.stream("GET", url, headers=headers) as response:
            if response.status in REDIRECTS:
                location = _header(response.headers, b"location")
                if location is None:
                    raise FetchFailed()
                return urljoin(url, location.decode("latin-1"))
            if response.status != 200:
                raise FetchFailed()
            declared = _header(response.headers, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise OverLimit(max_bytes)
            body = bytearray()
            async for chunk in response.aiter_stream():
                body += chunk
                if len(body) > max_bytes:
                    raise OverLimit(max_bytes)
            return bytes(body)


class OverLimit(MediaError):
    """Media over a size limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"media over the {limit}-byte limit")
        self.limit = limit


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((value for key, value in headers if key.lower() == name), None)
