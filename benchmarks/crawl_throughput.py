"""Crawl speed as ratios: `python benchmarks/crawl_throughput.py [--pairs 5] [--items 1000]`.

Three figures, each from A, B, A, B ... runs side by side (a slow moment of the machine weighs on
both), median of the pair ratios, against the demo shop served on loopback by this process:

1. pages/s of the generic spider (`python -m crawlers.run`, images off, HTTP cache off) against
   a bare Scrapy spider (this file's `--bare` mode: follows the same links with `response.css`,
   yields the same six fields as dicts, no pipelines) with the same concurrency, AutoThrottle,
   robots and retry settings. pages/s = responses / Scrapy's `elapsed_time_seconds` (the spider's
   run, process start-up excluded). Target >= 0.80x.
2. field extraction: `PageParser.parse_item` (parsel/lxml, the spider's parser) over every item
   page against BeautifulSoup(html, "html.parser") + `select_one` for the same six fields, in
   this process. Target <= 0.25x its time.
3. refresh of the unchanged site against the first crawl: wall time of the crawl stage
   (`python -m tasks.crawl` in a project, as DVC runs it: process start-up, the spider, writing
   data/raw) run again in the same project (warm HTTP cache, `.kiln/crawl-state.json`) against
   its first run in a new project. The refresh uses `crawl.revisit_after_s` (`--revisit-after-s`,
   a day by default): list pages are re-checked, item pages checked within the day are kept
   without a request. Target <= 0.10x. Also printed: what the refresh requested, the fixed
   cost of a crawl stage that fetches one page (start-up, Scrapy's set-up, writing data/raw: a
   floor under the refresh), and the refresh against the first crawl by requests the server
   answered, bytes received and the spider's crawling time (start-up excluded, as in 1).

`--extraction-only` measures figure 2 alone (no crawl; seconds instead of minutes).

`--cache` compares the HTTP cache's storage (crawlers/httpcache_sqlite.py, one SQLite file)
with Scrapy's FilesystemCacheStorage, which Kiln used before, instead of figures 1-3: A (SQLite),
B (filesystem), A, B ... each a new project crawled twice by the crawl stage (images on), the
first crawl and a refresh of the unchanged site with `--revisit-after-s` (0 by default here:
every page is revalidated through the cache, a 304 each, and stored again). Printed per storage:
the stage's wall time of both crawls, the spider's pages/s, and the cache's disk use (`du`)
against the bytes of the headers and bodies it holds (target: at most 2x).

`--latency-ms N` makes every answer of the demo shop wait N ms first (a site N ms away, not one
on loopback that answers in well under a millisecond); the default, 0, is the plain loopback run
the targets are judged on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import scrapy  # noqa: E402
from bs4 import BeautifulSoup  # noqa: E402
from scrapy.crawler import CrawlerProcess  # noqa: E402

from crawlers.demo_server import DemoSiteServer  # noqa: E402
from crawlers.demo_site import build_site  # noqa: E402
from crawlers.parse import PageParser  # noqa: E402
from crawlers.settings import settings_for  # noqa: E402
from tasks.core.params import DemoSiteParams, load_params  # noqa: E402

FIELDS = ("title", "label", "image", "writer", "ink", "price")


class BareSpider(scrapy.Spider):
    """The baseline: what a Scrapy user writes by hand for the demo shop."""

    name = "bare"

    def parse(self, response: Any, **kwargs: Any) -> Any:
        if "/item/" in response.url:
            yield {
                "url": response.url,
                "title": response.css("h1.title::text").get(),
                "label": response.css("span.label::text").get(),
                "image": response.css("img.digit::attr(src)").get(),
                "writer": response.css("dd.writer::text").get(),
                "ink": response.css("dd.ink::text").get(),
                "price": response.css("dd.price::text").get(),
            }
        for href in response.css("nav.pagination a::attr(href), ul.items a.item::attr(href)"):
            yield response.follow(href.get(), callback=self.parse)


def _crawl_cfg(url: str, images: bool, cache: bool) -> Any:
    cfg = load_params(ROOT / "params.yaml").crawl
    return cfg.model_copy(
        update={
            "start_urls": [url],
            "image_field": "image" if images else None,
            "http_cache": cache,
            "max_pages": 100_000,
        }
    )


def _bare_main(url: str, out: Path) -> None:
    """`--bare URL OUT`: run BareSpider with the generic spider's settings minus Kiln's parts."""
    ours = settings_for(_crawl_cfg(url, images=False, cache=False), out)
    keys = (
        "USER_AGENT",
        "ROBOTSTXT_OBEY",
        "RETRY_TIMES",
        "DOWNLOAD_TIMEOUT",
        "CONCURRENT_REQUESTS",
        "CONCURRENT_REQUESTS_PER_DOMAIN",
        "AUTOTHROTTLE_ENABLED",
        "AUTOTHROTTLE_START_DELAY",
        "AUTOTHROTTLE_MAX_DELAY",
        "AUTOTHROTTLE_TARGET_CONCURRENCY",
        "DOWNLOAD_DELAY",
        "TELNETCONSOLE_ENABLED",
        "REMOTE_CONTROL_ENABLED",
        "COOKIES_ENABLED",
        "LOG_LEVEL",
        "DOWNLOAD_MAXSIZE",
        "RETRY_HTTP_CODES",
    )
    process = CrawlerProcess({k: ours[k] for k in keys})
    crawler = process.create_crawler(BareSpider)
    process.crawl(crawler, start_urls=[url])
    process.start()
    stats = crawler.stats.get_stats()
    (out / "stats.json").write_text(json.dumps(stats, default=str))


def _run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def _pages_per_s(out: Path) -> float:
    stats = json.loads((out / "stats.json").read_text())
    return stats["response_received_count"] / float(stats["elapsed_time_seconds"])


def crawl_pages_per_s(url: str, tmp: Path, n: int, which: str) -> float:
    out = tmp / f"{which}-{n}"
    out.mkdir()
    if which == "bare":
        _run([__file__, "--bare", url, str(out)])
    else:
        config = out / "crawl.json"
        config.write_text(_crawl_cfg(url, images=False, cache=False).model_dump_json(by_alias=True))
        _run(["-m", "crawlers.run", "--config", str(config), "--out", str(out / "spider")])
        out = out / "spider"
    return _pages_per_s(out)


def _stage_s(project: Path, crawl: dict[str, Any]) -> tuple[float, dict]:
    """Wall time of the crawl stage (`python -m tasks.crawl`, as DVC and the flow run it) in
    `project` with params.yaml's `crawl` section updated by `crawl`, and its reports/crawl.json.
    Images on, HTTP cache on."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["crawl"].update(crawl)
    project.mkdir(parents=True, exist_ok=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tasks.crawl"], cwd=project, check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    wall = time.perf_counter() - start
    return wall, json.loads((project / "reports" / "crawl.json").read_text())


def stage_wall_s(url: str, project: Path, revisit_after_s: float) -> tuple[float, dict]:
    """The crawl stage over the whole demo shop."""
    crawl = {"start_urls": [url], "max_pages": 100_000, "revisit_after_s": revisit_after_s}
    return _stage_s(project, crawl)


def _spider_s(report: dict) -> float:
    """The spider's crawling time (Scrapy's elapsed_time_seconds: spider opened to closed,
    start-up excluded, as in the pages/s figure), from reports/crawl.json's pages / pages_per_s."""
    return report["pages"] / report["pages_per_s"]


def _work_ratios(first: dict, refresh: dict, first_requests: int, refresh_requests: int) -> dict:
    """Refresh / first crawl by what they asked of the site and by the spider's own time."""
    return {
        "requests (on the server)": refresh_requests / first_requests,
        "bytes received": refresh["bytes"] / first["bytes"],
        "spider crawling time": _spider_s(refresh) / _spider_s(first),
    }


def _empty_crawl_s(tmp: Path, url: str, n: int) -> float:
    """The crawl stage on a one-page site (the start URL is one item page): its fixed cost."""
    crawl = {"start_urls": [url + "item/digit-0000"], "follow_css": []}
    return _stage_s(tmp / f"empty-{n}", crawl)[0]


def extraction_s(pages: list[str], which: str) -> float:
    start = time.perf_counter()
    if which == "kiln":
        parser = PageParser(load_params(ROOT / "params.yaml").crawl.fields)
        for html in pages:
            parser.parse_item(html, "http://x/")
    else:
        selectors = ["h1.title", "span.label", "img.digit", "dd.writer", "dd.ink", "dd.price"]
        for html in pages:
            soup = BeautifulSoup(html, "html.parser")
            values = [soup.select_one(s) for s in selectors]
            _ = [
                v.get("src") if v is not None and v.name == "img" else v and v.get_text()
                for v in values
            ]
    return time.perf_counter() - start


def extraction_ratios(pages: list[str], n: int) -> list[float]:
    """Figure 2: Kiln's field extraction time over BeautifulSoup's, one ratio per pair."""
    ours, soup = _pairs(
        n, lambda i: extraction_s(pages, "kiln"), lambda i: extraction_s(pages, "bs4")
    )
    return [o / s for o, s in zip(ours, soup, strict=True)]


def _extraction_only(pages: list[str], n: int) -> int:
    ratio = statistics.median(extraction_ratios(pages, n))
    print(f"{len(pages)} item pages, {n} pairs")
    print(
        f"field extraction time vs BeautifulSoup html.parser (<= 0.25x): {ratio:.3f}x -> "
        f"{'holds' if ratio <= 0.25 else 'MISSED'}"
    )
    return 0


def _stage_with_storage(storage: str) -> int:
    """`--stage-with-storage sqlite|filesystem`, run in a project directory: the crawl stage
    with that HTTP cache storage (the filesystem one is Scrapy's, pruning off: the prune of
    crawlers/httpcache_prune.py deletes its entries)."""
    import crawlers.settings  # noqa: PLC0415
    import tasks.crawl  # noqa: PLC0415

    if storage == "filesystem":
        crawlers.settings.HTTPCACHE_STORAGE = "scrapy.extensions.httpcache.FilesystemCacheStorage"
        tasks.crawl.prune_http_cache = lambda cache, max_bytes: None
    return tasks.crawl.main()


def _cache_use(cache: Path, storage: str) -> tuple[int, int]:
    """(disk bytes as `du` counts them, bytes of the response headers and bodies held)."""
    from crawlers.httpcache_sqlite import CACHE_FILE, held_bytes  # noqa: PLC0415

    if storage == "sqlite":
        held = held_bytes(cache / CACHE_FILE)
        return held["disk_bytes"], held["held_bytes"]
    disk = sum(p.lstat().st_blocks * 512 for p in [cache, *cache.rglob("*")])
    held = sum(p.stat().st_size for name in ("response_body", "response_headers")
               for p in cache.rglob(name))  # fmt: skip
    return disk, held


def _storage_run(url: str, project: Path, storage: str, revisit_after_s: float) -> dict:
    """A new project crawled twice with `storage`: wall times, pages/s and the cache's size."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["crawl"].update({"start_urls": [url], "max_pages": 100_000,
                            "revisit_after_s": revisit_after_s})  # fmt: skip
    project.mkdir(parents=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    out: dict[str, Any] = {}
    cmd = [sys.executable, __file__, "--stage-with-storage", storage]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in ("first", "refresh"):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=project, check=True, capture_output=True, env=env)
        out[f"{run} s"] = time.perf_counter() - start
        report = json.loads((project / "reports" / "crawl.json").read_text())
        out[f"{run} pages/s"] = report["pages_per_s"]
    disk, held = _cache_use(project / ".kiln" / "httpcache", storage)
    return out | {"cache MiB": disk / 2**20, "held MiB": held / 2**20, "disk/held": disk / held}


def _cache_comparison(url: str, tmp: Path, pairs: int, revisit_after_s: float) -> None:
    runs: dict[str, list[dict]] = {"sqlite": [], "filesystem": []}
    for i in range(pairs):
        for storage, done in runs.items():  # A, B, A, B ...
            done.append(_storage_run(url, tmp / f"{storage}-{i}", storage, revisit_after_s))
    names = list(runs["sqlite"][0])
    print(f"{'HTTP cache storage (median)':<28}" + "".join(f"{n:>16}" for n in names))
    medians = {s: {n: statistics.median(r[n] for r in rs) for n in names} for s, rs in runs.items()}
    for storage, row in medians.items():
        print(f"{storage:<28}" + "".join(f"{row[n]:>16.3f}" for n in names))
    pairs_run = list(zip(runs["sqlite"], runs["filesystem"], strict=True))
    ratios = {n: statistics.median(a[n] / b[n] for a, b in pairs_run) for n in names}
    print(f"{'sqlite / filesystem':<28}" + "".join(f"{ratios[n]:>16.3f}" for n in names))
    ratio = medians["sqlite"]["disk/held"]
    verdict = "holds" if ratio <= 2 else "MISSED"
    print(f"SQLite cache disk / bytes held (<= 2x): {ratio:.3f}x -> {verdict}")


def _cache_main(args: argparse.Namespace, server: DemoSiteServer) -> int:
    revisit = args.revisit_after_s if "--revisit-after-s" in sys.argv else 0.0
    try:
        with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmpdir:
            print(f"demo shop: {args.items} items, {args.pairs} pairs, refresh with "
                  f"crawl.revisit_after_s={revisit:g}")  # fmt: skip
            _cache_comparison(server.url, Path(tmpdir), args.pairs, revisit)
    finally:
        server.stop()
    return 0


def _pairs(n: int, a: Any, b: Any) -> tuple[list[float], list[float]]:
    As, Bs = [], []  # noqa: N806 (A: Kiln, B: the baseline)
    for i in range(n):
        As.append(a(i))
        Bs.append(b(i))
    return As, Bs


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument(
        "--revisit-after-s",
        type=float,
        default=86400.0,
        help="crawl.revisit_after_s of the refresh (0: revalidate every page)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="ms every answer of the demo shop waits first (0: plain loopback)",
    )
    parser.add_argument("--extraction-only", action="store_true", help="figure 2 alone")
    parser.add_argument(
        "--cache", action="store_true", help="HTTP cache: SQLite vs Scrapy's filesystem storage"
    )
    return parser.parse_args()


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--bare":
        _bare_main(sys.argv[2], Path(sys.argv[3]))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "--stage-with-storage":
        return _stage_with_storage(sys.argv[2])
    args = _args()
    site_params = DemoSiteParams(
        n_items=args.items, n_duplicates=0, n_broken=0, sections=[], bad_label_share=0.0
    )
    site = build_site(site_params)
    if args.extraction_only:
        return _extraction_only([site.pages[p].body.decode() for p in site.item_paths], args.pairs)
    delay_s = args.latency_ms / 1000
    pages = {path: dataclasses.replace(page, delay_s=delay_s) for path, page in site.pages.items()}
    server = DemoSiteServer(pages, site_params.host, 0)
    if args.cache:
        return _cache_main(args, server)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmpdir:
            tmp = Path(tmpdir)
            kiln, bare = _pairs(
                args.pairs,
                lambda i: crawl_pages_per_s(server.url, tmp, i, "kiln"),
                lambda i: crawl_pages_per_s(server.url, tmp, i, "bare"),
            )
            rows.append(
                (
                    "crawl pages/s",
                    kiln,
                    bare,
                    [k / b for k, b in zip(kiln, bare, strict=True)],
                    0.80,
                )
            )
            html = [site.pages[p].body.decode() for p in site.item_paths]
            ours, soup = _pairs(
                args.pairs,
                lambda i: extraction_s(html, "kiln"),
                lambda i: extraction_s(html, "bs4"),
            )
            rows.append(
                ("extraction s", ours, soup, [o / s for o, s in zip(ours, soup, strict=True)], 0.25)
            )
            first, refresh, reports, other = [], [], [], []
            for i in range(args.pairs):  # A: a new project, B: the same project again
                project = tmp / f"project-{i}"
                mark = len(server.requests)
                wall, first_report = stage_wall_s(server.url, project, args.revisit_after_s)
                first.append(wall)
                first_requests, mark = len(server.requests) - mark, len(server.requests)
                wall, report = stage_wall_s(server.url, project, args.revisit_after_s)
                refresh.append(wall)
                reports.append(report)
                other.append(_work_ratios(first_report, report, first_requests,
                                          len(server.requests) - mark))  # fmt: skip
            rows.append(
                (
                    "crawl stage s",
                    refresh,
                    first,
                    [r / f for r, f in zip(refresh, first, strict=True)],
                    0.10,
                )
            )
            empty = [_empty_crawl_s(tmp, server.url, i) for i in range(args.pairs)]
    finally:
        server.stop()
    print(f"demo shop: {args.items} items ({len(site.item_paths)} item pages), {args.pairs} pairs, "
          f"answers after {args.latency_ms:g} ms")  # fmt: skip
    print(f"{'figure':<16}{'A (Kiln) median':>18}{'B (baseline) median':>22}{'ratio median':>14}")
    for name, a, b, ratios, _ in rows:
        print(
            f"{name:<16}{statistics.median(a):>18.3f}{statistics.median(b):>22.3f}"
            f"{statistics.median(ratios):>14.3f}"
        )
    last = reports[-1]
    print(
        f"refresh (crawl.revisit_after_s={args.revisit_after_s:g}): {last['pages']} pages "
        f"requested, {last['kept']} items kept without a request, {last['not_modified']} 304s, "
        f"{last['bytes']} bytes, {last.get('fetched_ahead', 0)} list pages fetched ahead; "
        f"the spider's own run {last['duration_s']:.2f} s"
    )
    print(
        f"fixed cost of a crawl stage that requests 1 page (process start-up, Scrapy set-up, "
        f"writing data/raw): median {statistics.median(empty):.2f} s, "
        f"{statistics.median(empty) / statistics.median(first):.3f}x the first crawl"
    )
    for name in other[0]:
        ratio = statistics.median(o[name] for o in other)
        print(f"refresh vs first crawl, {name}: {ratio:.3f}x")
    labels = [
        "generic spider pages/s vs bare Scrapy (>= 0.80x)",
        "field extraction time vs BeautifulSoup html.parser (<= 0.25x)",
        "refresh of the unchanged site vs first crawl, crawl stage wall (<= 0.10x)",
    ]
    for label, (_, _, _, ratios, target) in zip(labels, rows, strict=True):
        ratio = statistics.median(ratios)
        holds = ratio >= target if target == 0.80 else ratio <= target
        print(f"{label}: {ratio:.3f}x -> {'holds' if holds else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
