"""Which URLs the crawler may fetch; checked by `python -m tasks.crawl` before the spider starts
and by `crawlers.middlewares.UrlGuardMiddleware` on every request (links, redirects, images,
robots.txt), so a refused URL is never connected to.

Refused: schemes other than http/https (file://, ftp://, data:); hosts outside
`crawl.allowed_domains` (a domain also allows its subdomains); link-local (cloud metadata at
169.254.169.254), unspecified, multicast and reserved addresses, always; loopback (127.0.0.0/8,
::1, localhost) unless `crawl.allow_loopback`; private networks (10/8, 172.16/12, 192.168/16,
fc00::/7, ...) unless `crawl.allow_private`; every other special-purpose range of IANA's
registries (shared address space 100.64.0.0/10, documentation and benchmarking ranges), always;
and an IPv6 address whose embedded IPv4 address (mapped, 6to4, Teredo, NAT64) is refused. A host
name is refused when any of its addresses is refused, so an allowed-looking name cannot point the
crawler at the machine; and the address Scrapy connects to is the one `GuardedResolver` checked
when it resolved the name (no second lookup a DNS rebinding could answer differently).
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from scrapy.resolver import CachingThreadedResolver, dnscache
from twisted.internet.error import DNSLookupError

from crawlers.parse import PageParser
from crawlers.settings import crawl_params_from
from tasks.core.params import CrawlParams

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _host_allowed(host: str, allowed_domains: list[str]) -> bool:
    # Not scrapy.utils.url.url_is_from_any_domain: it compares the netloc, port and user included
    # (http://127.0.0.1:8765/ would not be in 127.0.0.1), and keeps a host's trailing dot.
    host = host.lower()
    domains = [d.lower().rstrip(".") for d in allowed_domains]
    return any(host == d or host.endswith("." + d) for d in domains)


@cache
def _resolve(host: str) -> tuple[_Address, ...]:
    """Addresses of a host name; () when it does not resolve (the download then fails on DNS).

    Blocking, but cached: one lookup per host per crawl.
    """
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return ()
    return tuple(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)


def _addresses(host: str, resolve: bool) -> tuple[_Address, ...]:
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass  # a name, not an address literal
    if host == "localhost" or host.endswith(".localhost"):
        return (ipaddress.ip_address("127.0.0.1"),)
    return _resolve(host) if resolve else ()


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address


def _embedded_ipv4(address: _Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64): reaching the
    IPv6 form can reach them, so each is checked as well."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo:
        found.extend(address.teredo)  # (server, client)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def address_problem(address: _Address, cfg: CrawlParams) -> str | None:  # noqa: PLR0911 (a return per kind)
    """Why the crawler may not connect to `address` under `cfg`, or None when it may."""
    for inner in _embedded_ipv4(address):
        problem = address_problem(inner, cfg)
        if problem:
            return f"{problem}, embedded in {address}"
    if address.is_loopback:
        return None if cfg.allow_loopback else "a loopback address (crawl.allow_loopback is false)"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "an unspecified, multicast or reserved address"
    if address.is_private and not cfg.allow_private:
        return "a private address (crawl.allow_private is false)"
    # What is left of IANA's special-purpose registries (shared address space 100.64.0.0/10,
    # documentation, benchmarking, ...): never on the public web.
    if not address.is_global and not address.is_private:
        return "a special-purpose address that is not globally reachable"
    return None


def refusal_reason(url: str, cfg: CrawlParams, *, resolve: bool = True) -> str | None:
    """Why `url` may not be fetched under `cfg`, or None when it may.

    `resolve=False` skips the DNS lookup of host names (address literals are always checked).
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        return f"malformed URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme + '://' if parts.scheme else '(none)'} is not http(s)"
    if not host:
        return "the URL has no host"
    if not _host_allowed(host, cfg.allowed_domains):
        return f"host {host} is not in crawl.allowed_domains {cfg.allowed_domains}"
    for address in _addresses(host, resolve):
        problem = address_problem(address, cfg)
        if problem:
            return f"host {host} is {problem}"
    return None


def check_crawl_config(cfg: CrawlParams) -> None:
    """Raise ValueError naming the problem when the crawl must not start at all: a refused
    start URL, or a field or item-list selector that does not compile."""
    PageParser(cfg.fields, cfg.item_list)
    for url in cfg.start_urls:
        reason = refusal_reason(url, cfg)
        if reason:
            raise ValueError(f"start URL {url} refused: {reason}")


class GuardedResolver(CachingThreadedResolver):
    """Scrapy's default resolver (`TWISTED_DNS_RESOLVER`), refusing a name whose address the guard
    refuses: the check and the connection use the one lookup."""

    def __init__(self, reactor: Any, cache_size: int, timeout: float, cfg: CrawlParams) -> None:
        super().__init__(reactor, cache_size, timeout)
        self.cfg = cfg

    @classmethod
    def from_crawler(cls, crawler: Any, reactor: Any) -> GuardedResolver:
        plain = CachingThreadedResolver.from_crawler(crawler, reactor)
        return cls(reactor, dnscache.limit, plain.timeout, crawl_params_from(crawler.settings))

    def getHostByName(self, name: str, timeout: Any = ()) -> Any:  # noqa: N802 (Twisted's name)
        return super().getHostByName(name, timeout).addCallback(self.checked, name)

    def checked(self, ip: str, name: str) -> str:
        """`ip` (what `name` resolved to) if the guard allows it, else DNSLookupError."""
        problem = address_problem(ipaddress.ip_address(ip.split("%", maxsplit=1)[0]), self.cfg)
        if problem:
            raise DNSLookupError(f"{name} resolved to {ip}: {problem}")
        return ip
