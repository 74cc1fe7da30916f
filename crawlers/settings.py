"""Scrapy settings of the Kiln crawler; `python -m crawlers.run` loads them via `settings_for()`.

The constants below are the fixed policy; `settings_for()` adds what `params.yaml` `crawl`
decides (user agent, robots, retries, timeout, concurrency, page budget) and where output goes.
"""

from __future__ import annotations

from pathlib import Path

from scrapy.settings import BaseSettings, Settings

from tasks.params import CrawlParams

BOT_NAME = "kiln"
SPIDER_MODULES = ["crawlers.spiders"]
TELNETCONSOLE_ENABLED = False  # no listening debug console
# Scrapy 2.19's code-executing HTTP console (on by default; writes job files under
# ~/.local/state/scrapy): nothing may listen or run code on a crawler's behalf.
REMOTE_CONTROL_ENABLED = False
COOKIES_ENABLED = False  # catalogue pages need no session
LOG_LEVEL = "INFO"  # DEBUG logs a line per request: thousands on the demo site
LOGSTATS_INTERVAL = 5.0  # seconds between "Crawled N pages" progress lines
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

DOWNLOADER_MIDDLEWARES = {
    "crawlers.middlewares.UrlGuardMiddleware": 40,  # before Scrapy's offsite filter (50)
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawlers.middlewares.StrictRobotsTxtMiddleware": 100,
}
ITEM_PIPELINES = {
    "crawlers.pipelines.HashedImagesPipeline": 100,
    "crawlers.pipelines.JsonlWriterPipeline": 900,
}


def settings_for(cfg: CrawlParams, out_dir: Path) -> Settings:
    """These settings plus the crawl section of params.yaml; spider output goes to `out_dir`."""
    settings = Settings()
    settings.setmodule("crawlers.settings", priority="project")
    settings.setdict(
        {
            "KILN_CRAWL_JSON": cfg.model_dump_json(),
            "KILN_OUT_DIR": str(out_dir),
            "FILES_STORE": str(out_dir),  # the images pipeline writes out_dir/images/<sha256>.png
            "USER_AGENT": cfg.user_agent,
            "ROBOTSTXT_OBEY": cfg.obey_robots,
            "RETRY_TIMES": cfg.retries,
            "DOWNLOAD_TIMEOUT": cfg.download_timeout_s,
            "CONCURRENT_REQUESTS": max(16, cfg.concurrency),
            "CONCURRENT_REQUESTS_PER_DOMAIN": cfg.concurrency,
            "AUTOTHROTTLE_TARGET_CONCURRENCY": float(cfg.concurrency),
            "CLOSESPIDER_PAGECOUNT": cfg.max_pages,
        },
        priority="cmdline",
    )
    return settings


def crawl_params_from(settings: BaseSettings) -> CrawlParams:
    """The crawl section that `settings_for()` stored, for middlewares, pipelines and the spider."""
    return CrawlParams.model_validate_json(settings["KILN_CRAWL_JSON"])
