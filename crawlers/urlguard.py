"""Which URLs the crawler may fetch; checked by `python -m tasks.crawl` before the spider starts
and by `crawlers.middlewares.UrlGuardMiddleware` on every request (links, redirects, images,
robots.txt), so a refused URL is never connected to.

Refused: schemes other than http/https (file://, ftp://, data:); hosts outside
`crawl.allowed_domains` (a domain also allows its subdomains); link-local (cloud metadata at
169.254.169.254), unspecified, multicast and reserved addresses, always; loopback (127.0.0.0/8,
::1, localhost) unless `crawl.allow_loopback`; private networks (10/8, 172.16/12, 192.168/16,
fc00::/7, ...) unless `crawl.allow_private`. A host name is resolved once and refused when any
of its addresses is refused, so an allowed-looking name cannot point the crawler at the machine.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache
from urllib.parse import urlsplit

from crawlers.parse import PageParser
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


def _address_problem(address: _Address, cfg: CrawlParams) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None if cfg.allow_loopback else "a loopback address (crawl.allow_loopback is false)"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "an unspecified, multicast or reserved address"
    if address.is_private and not cfg.allow_private:
        return "a private address (crawl.allow_private is false)"
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
        problem = _address_problem(address, cfg)
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
