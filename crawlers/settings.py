"""Scrapy settings of the Kiln crawler; `python -m crawlers.run` loads them via `settings_for()`.

The constants below are the fixed policy; `settings_for()` adds what `params.yaml` `crawl`
decides (user agent, robots, retries, timeout, concurrency) and where output goes; the limits
are read from the crawl section itself (`crawl_params_from`) by crawlers/limits.py and
crawlers/pipelines.py.
"""

from __future__ import annotations

from pathlib import Path

from scrapy.settings import BaseSettings, Settings

from crawlers.revisit import CARRY_FILE, PREFETCH_FILE
from tasks.core.params import CrawlParams

BOT_NAME = "kiln"
SPIDER_MODULES = ["crawlers.spiders"]
TELNETCONSOLE_ENABLED = False  # no listening debug console
# Scrapy 2.19's code-executing HTTP console (on by default; writes job files under
# ~/.local/state/scrapy): nothing may listen or run code on a crawler's behalf.
REMOTE_CONTROL_ENABLED = False
COOKIES_ENABLED = False  # catalogue pages need no session
LOG_LEVEL = "INFO"  # DEBUG logs a line per request: thousands on the demo site
LOGSTATS_INTERVAL = 60.0  # seconds between Scrapy's "Crawled N pages" lines; the crawl's own
# progress lines (crawlers/limits.py: count, rate, ETA, at least every 10 s) say it better
STATS_DUMP = False  # crawlers.run writes the stats to stats.json instead of ~50 log lines
LOG_VERSIONS: list[str] = []  # the versions are pinned in requirements.lock

# AutoThrottle adapts the per-host delay to latency/target concurrency (target set from
# crawl.concurrency). On loopback latency is ~1 ms, so the delay falls towards 0 within a few
# responses; a slow remote host gets a delay of up to 10 s instead of being hammered.
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.05  # seconds, before any latency was measured
AUTOTHROTTLE_MAX_DELAY = 10.0  # seconds
DOWNLOAD_DELAY = 0.0  # AutoThrottle's floor

RETRY_ENABLED = True
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]  # transient; a 404 is not retried
RETRY_GIVE_UP_LOG_LEVEL = "WARNING"  # the page becomes a reject; tasks.crawl judges the run
DOWNLOAD_MAXSIZE = 32 * 1024 * 1024  # bytes; also bounds decompressed size (gzip bombs)
DOWNLOAD_WARNSIZE = 4 * 1024 * 1024  # bytes; a catalogue page is ~1 kB, an image ~100 B
DOWNLOAD_FAIL_ON_DATALOSS = True  # a body cut short is an error (retried), never an item
MEDIA_ALLOW_REDIRECTS = False  # an image URL that redirects gives a reject, not a guess

# Components Kiln never uses are removed, not only switched off, so that no setting (a custom
# spider's `custom_settings` included, see settings_for) can bring them back. The crawl fetches
# http(s) only (crawlers/urlguard.py), so the file, data, s3 and ftp download handlers are not
# there either: a URL the guard missed still cannot be read.
DOWNLOAD_HANDLERS = {"file": None, "data": None, "s3": None, "ftp": None}

DOWNLOADER_MIDDLEWARES = {
    "crawlers.middlewares.UrlGuardMiddleware": 40,  # before Scrapy's offsite filter (50)
    "crawlers.prefetch.ListPrefetchMiddleware": 45,  # outside every middleware that downloads
    "scrapy.downloadermiddlewares.stats.DownloaderStats": None,
    "crawlers.prefetch.PrefetchAwareDownloaderStats": 850,  # Scrapy's stats slot
    "scrapy.downloadermiddlewares.cookies.CookiesMiddleware": None,  # COOKIES_ENABLED = False
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawlers.middlewares.StrictRobotsTxtMiddleware": 100,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawlers.middlewares.BackoffRetryMiddleware": 550,  # Scrapy's retry slot
    "crawlers.middlewares.RedirectGuardMiddleware": 650,  # sees a 3xx before RedirectMiddleware
}
EXTENSIONS = {
    "scrapy.extensions.telnet.TelnetConsole": None,  # TELNETCONSOLE_ENABLED = False
    "scrapy.extensions.remote_control.RemoteControl": None,  # REMOTE_CONTROL_ENABLED = False
    "scrapy.extensions.feedexport.FeedExporter": None,  # output is JsonlWriterPipeline's
    "scrapy.extensions.closespider.CloseSpider": None,  # counted every response: see limits.py
    "crawlers.limits.CrawlLimits": 0,  # crawl.max_pages, crawl.max_files
    "scrapy.extensions.throttle.AutoThrottle": None,
    "crawlers.extensions.RevalidationAwareAutoThrottle": 0,  # a 304 is not an error page
}
ITEM_PIPELINES = {
    "crawlers.pipelines.NormalizeItemPipeline": 50,  # a custom spider's dicts -> PageItem
    "crawlers.pipelines.HashedImagesPipeline": 100,
    "crawlers.pipelines.JsonlWriterPipeline": 900,
}

# Incremental refresh: Scrapy's HTTP cache with its RFC 2616 policy. A stored page that is stale
# is revalidated with If-None-Match / If-Modified-Since and a 304 reuses the stored body; a page
# the server declared fresh (Cache-Control: max-age) is not requested at all. 5xx are not stored.
# The store is one SQLite file (crawlers/httpcache_sqlite.py): Scrapy's filesystem storage took
# 7 files and ~28 KiB of disk per response of under 1 kB.
HTTPCACHE_POLICY = "scrapy.extensions.httpcache.RFC2616Policy"
HTTPCACHE_STORAGE = "crawlers.httpcache_sqlite.SqliteCacheStorage"
HTTPCACHE_IGNORE_HTTP_CODES = [429, 500, 502, 503, 504, 522, 524]

# Policy a custom spider (crawl.spider) may not loosen through its `custom_settings`: these are
# set at "cmdline" priority, above Scrapy's "spider" priority.
# The guard's resolver: the address a name resolves to is checked once and connected to.
# TWISTED_DNS_RESOLVER, not DNS_RESOLVER: Scrapy 2.19 deprecates the latter and warns on every
# crawl that sets it (scrapy/crawler.py, `_setup_reactor`).
TWISTED_DNS_RESOLVER = "crawlers.urlguard.GuardedResolver"
_ENFORCED = ("TWISTED_DNS_RESOLVER", "TELNETCONSOLE_ENABLED", "REMOTE_CONTROL_ENABLED",
             "COOKIES_ENABLED", "DOWNLOAD_FAIL_ON_DATALOSS", "MEDIA_ALLOW_REDIRECTS",
             "RETRY_HTTP_CODES", "HTTPCACHE_POLICY", "HTTPCACHE_STORAGE")  # fmt: skip


def settings_for(cfg: CrawlParams, out_dir: Path, cache_dir: Path | None = None) -> Settings:
    """These settings plus the crawl section of params.yaml; spider output goes to `out_dir`.

    `cache_dir`: where the HTTP cache lives (None: no cache).
    """
    settings = Settings()
    settings.setmodule("crawlers.settings", priority="project")
    settings.setdict(
        {
            "KILN_CRAWL_JSON": cfg.model_dump_json(by_alias=True),
            "KILN_OUT_DIR": str(out_dir),
            "KILN_CARRY_FILE": str(out_dir / CARRY_FILE),  # item pages the spider may skip
            "KILN_PREFETCH_FILE": str(out_dir / PREFETCH_FILE),  # list pages to fetch ahead
            "FILES_STORE": str(out_dir),  # the images pipeline writes out_dir/images/<sha256>.png
            "USER_AGENT": cfg.user_agent,
            "ROBOTSTXT_OBEY": cfg.obey_robots,
            "RETRY_TIMES": cfg.retries,
            "DOWNLOAD_TIMEOUT": cfg.download_timeout_s,
            "CONCURRENT_REQUESTS": max(16, cfg.concurrency),
            "CONCURRENT_REQUESTS_PER_DOMAIN": cfg.concurrency,
            "AUTOTHROTTLE_TARGET_CONCURRENCY": float(cfg.concurrency),
            "KILN_MAX_ITEMS": cfg.max_items or 0,  # JsonlWriterPipeline stops the spider there
            "DEPTH_LIMIT": cfg.max_depth or 0,
            "DOWNLOAD_MAXSIZE": cfg.max_response_bytes,  # also bounds the decompressed size
            "DOWNLOAD_WARNSIZE": min(DOWNLOAD_WARNSIZE, cfg.max_response_bytes),
            "KILN_RETRY_BACKOFF_S": cfg.retry_backoff_s,
            "KILN_MAX_RETRY_AFTER_S": cfg.max_retry_after_s,
            "HTTPCACHE_ENABLED": cache_dir is not None,
            "HTTPCACHE_DIR": str(cache_dir or ""),
        },
        priority="cmdline",
    )
    for key in _ENFORCED:
        settings.set(key, globals()[key], priority="cmdline")
    # Whole dicts at "cmdline": a spider's custom_settings cannot drop the guard or the writer,
    # nor bring back the consoles or a non-http(s) download handler.
    settings.set("DOWNLOADER_MIDDLEWARES", DOWNLOADER_MIDDLEWARES, priority="cmdline")
    settings.set("ITEM_PIPELINES", ITEM_PIPELINES, priority="cmdline")
    settings.set("EXTENSIONS", EXTENSIONS, priority="cmdline")
    settings.set("DOWNLOAD_HANDLERS", DOWNLOAD_HANDLERS, priority="cmdline")
    return settings


def crawl_params_from(settings: BaseSettings) -> CrawlParams:
    """The crawl section that `settings_for()` stored, for middlewares, pipelines and the spider."""
    return CrawlParams.model_validate_json(settings["KILN_CRAWL_JSON"])
