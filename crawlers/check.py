"""Try the `crawl` selectors on one page: `kiln crawl --check URL` (flows/cli.py calls `check_url`).

The quick loop of writing selectors: fetch one page under the same rules as the crawl (the URL
guard on the URL and on every redirect hop, before connecting; robots.txt, with an unreachable
one meaning "skip the host"; `crawl.user_agent`, timeout and size limit), then show what each
field gives and which selectors matched nothing. Fetching is the stdlib's urllib (one page needs
no Scrapy reactor); reading is the same `crawlers.parse.PageParser` the spider uses.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from protego import Protego

from crawlers.fields import FieldResult
from crawlers.items import PageReject
from crawlers.parse import PageParser, decode_page
from crawlers.urlguard import refusal_reason
from tasks.core.params import CrawlParams

_MAX_REDIRECTS = 5


class CheckError(RuntimeError):
    """The page could not be fetched under the crawl's rules; the message says why."""


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status: int
    content_type: str
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # each hop is checked by fetch() before it is followed


def _read_by(resp: Any, deadline: float, url: str, cfg: CrawlParams) -> bytes:
    """The body, read in chunks until `deadline` (time.monotonic): urllib's timeout is per read,
    so a server sending a byte a second would otherwise hold the check for as long as it likes.
    Past the deadline by at most one read (each read waits at most download_timeout_s)."""
    chunks, size = [], 0
    # an HTTPError (a 4xx/5xx answer) wraps the HTTPResponse it read as `fp`
    read1 = resp.fp.read1 if isinstance(resp, urllib.error.HTTPError) else resp.read1
    while chunk := read1(1 << 16):
        chunks.append(chunk)
        size += len(chunk)
        if size > cfg.max_response_bytes:
            raise CheckError(f"{url}: larger than crawl.max_response_bytes")
        if time.monotonic() > deadline:
            raise CheckError(
                f"{url}: the answer took longer than crawl.download_timeout_s "
                f"({cfg.download_timeout_s:g} s) to arrive"
            )
    return b"".join(chunks)


def _get(url: str, cfg: CrawlParams) -> Fetched:
    deadline = time.monotonic() + cfg.download_timeout_s
    opener = urllib.request.build_opener(_NoRedirect)
    # S310: fetch() let only http(s) URLs that the URL guard accepts get here.
    request = urllib.request.Request(url, headers={"User-Agent": cfg.user_agent})  # noqa: S310
    try:
        resp = opener.open(request, timeout=cfg.download_timeout_s)
    except urllib.error.HTTPError as err:
        resp = err  # a 3xx/4xx/5xx still has headers and a body
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise CheckError(f"{url}: {exc}") from exc
    with resp:
        body = _read_by(resp, deadline, url, cfg)
        headers = resp.headers
        if 300 <= resp.status < 400 and headers.get("Location"):
            return Fetched(urljoin(url, headers["Location"]), resp.status, "redirect", b"")
        return Fetched(url, resp.status, headers.get("Content-Type", ""), body)


def fetch(url: str, cfg: CrawlParams, *, robots: bool = True) -> Fetched:
    """GET `url` following at most 5 redirects, each hop checked before connecting."""
    for _ in range(_MAX_REDIRECTS + 1):
        reason = refusal_reason(url, cfg)
        if reason:
            raise CheckError(f"refused {url}: {reason}")
        if robots and cfg.obey_robots and not _robots_allow(url, cfg):
            raise CheckError(f"robots.txt of {urlsplit(url).netloc} disallows {url}")
        got = _get(url, cfg)
        if got.content_type != "redirect":
            return got
        url = got.url
    raise CheckError(f"more than {_MAX_REDIRECTS} redirects")


def _robots_allow(url: str, cfg: CrawlParams) -> bool:
    parts = urlsplit(url)
    robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
    try:
        got = fetch(robots_url, cfg, robots=False)
    except CheckError as exc:
        raise CheckError(f"robots.txt unreachable ({exc}): the crawl skips this host") from exc
    if got.status >= 500 or got.status == 429:  # RFC 9309: unreachable, assume disallowed
        raise CheckError(f"robots.txt answered HTTP {got.status}: the crawl skips this host")
    if got.status >= 400:
        return True  # no robots.txt: everything allowed
    rules = Protego.parse(decode_page(got.body, got.content_type))
    return rules.can_fetch(url, cfg.user_agent)


def check_url(url: str, cfg: CrawlParams) -> tuple[Fetched, dict[str, FieldResult]]:
    """Fetch `url` as the crawl would and read every field; CheckError when it cannot."""
    got = fetch(url, cfg)
    text = decode_page(got.body, got.content_type)
    return got, PageParser(cfg.fields, cfg.item_list).report(text, got.url)


def format_report(
    got: Fetched, report: dict[str, FieldResult], cfg: CrawlParams
) -> tuple[str, bool]:
    """The page's HTTP status first, then whether the crawl keeps it as an item and why, then
    each field, required ones before optional ones. Returns the text and whether it is kept."""
    lines = [f"HTTP {got.status}  {got.url}  {got.content_type}  {len(got.body)} bytes"]
    verdict = PageParser(cfg.fields, cfg.item_list).verdict(report, got.url)
    pattern = cfg.item_url_pattern
    if got.status >= 400:
        kept, why = False, f"rejected: the answer is HTTP {got.status} (the crawl counts a failure)"
    elif cfg.item_list is None and pattern is not None and not re.search(pattern, got.url):
        kept, why = False, (f"not an item page: its URL does not match crawl.item_url_pattern "
                            f"{pattern!r} (the crawl follows its links and keeps nothing of it)")
    elif isinstance(verdict, PageReject):
        kept, why = False, f"rejected: {verdict.reason}"
    else:
        kept, why = True, "kept: every required field has a value and every value converted"
    lines += [why, ""]
    width = max(len(name) for name in report)
    empty = []
    for required in (True, False):
        names = [n for n in report if cfg.fields[n].required is required]
        if names:
            lines.append("required fields:" if required else "optional fields:")
        for name in names:
            result, spec = report[name], cfg.fields[name]
            selector = f"css {spec.css!r}" if spec.css is not None else f"xpath {spec.xpath!r}"
            if result.n_matches == 0:
                empty.append(name)
                shown = "(matched nothing)"
            elif result.problem:
                shown = f"(unreadable: {result.problem})"
            else:
                shown = repr(result.value)
            if len(shown) > 100:
                shown = shown[:97] + "..."
            lines.append(f"  {name:<{width}}  {shown}  [{selector}]")
    lines += ["", f"selectors that matched nothing: {', '.join(empty) if empty else 'none'}"]
    return "\n".join(lines), kept
