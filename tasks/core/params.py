"""The params.yaml schema: `python -m tasks.core.params [params.yaml]` checks a file and prints it.

Every stage reads its section through `load_params()`, which parses the whole file once into
frozen pydantic models that reject unknown keys. A typo fails before any work with the key's full
path and the closest valid name; an out-of-range value names the field and the bound.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.core.plugins import UnknownTaskType, task_type

DEFAULT_PARAMS_PATH = Path("params.yaml")
# A params file may hold at most this many values (YAML aliases included, counted each time they
# are used) nested at most this deep: a 5.5 KB file of nested aliases expands to billions of
# values ("billion laughs"), which validation would walk and an error message would print.
MAX_VALUES = 100_000  # the shipped params files hold ~300
MAX_DEPTH = 32  # levels of mappings and lists; the shipped files use 5
MAX_SHOWN = 200  # characters of a wrong value an error message quotes


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser when PyYAML has it (5-10x faster than the pure-Python one), safe, and
    refusing a key written twice in one mapping (YAML forbids it; PyYAML would keep the last, so
    a second `train:` section would silently replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is written twice (lines {seen[key]} and {line})"
                )
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_LOADER = _Loader


def _number_not_bool(annotation: Any) -> bool:
    """Whether a field of this type takes an int or float but not a bool."""
    kinds = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return any(k in (int, float) for k in kinds) and bool not in kinds


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """Pydantic reads `epochs: true` as 1; YAML's true/yes/on in a number's place is a typo."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                key = field.alias or name
                value = data.get(key, data.get(name))
                if isinstance(value, bool) and _number_not_bool(field.annotation):
                    raise ValueError(
                        f"'{key}' must be a number, got {value!r} (YAML reads true/false, "
                        "yes/no and on/off as booleans)"
                    )
        return data


class ProjectParams(_Section):
    name: str = Field(description="Project name, used for the Prefect flow run and deployment.")
    task: str = Field(
        description="What the model learns: a registered task type (image_classification, "
        "text_classification, forecasting, text_generation, or one a plug-in adds)."
    )


class DemoSiteParams(_Section):
    """The local demo website generated from scikit-learn's handwritten digits."""

    host: str = Field("127.0.0.1", description="Loopback address the demo site binds to.")
    port: int = Field(8765, ge=1, le=65535, description="TCP port of the demo site.")
    n_items: int = Field(
        1797, ge=20, le=1797, description="Digits put on the site (sklearn ships 1797)."
    )
    per_page: int = Field(24, ge=1, le=500, description="Items per list page.")
    n_duplicates: int = Field(
        40, ge=0, description="Items also listed under a second URL with the same content."
    )
    n_broken: int = Field(3, ge=0, description="Item pages that answer 500 or broken HTML.")
    bad_label_share: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Share of items whose label is not a digit at all (validate quarantines "
        "them); 0.01 keeps the demo passing, a large value makes validation fail.",
    )
    seed: int = Field(0, description="Seed for which items get dirt; same seed, same site.")
    sections: list[Literal["jokes", "co2"]] = Field(
        default_factory=lambda: ["jokes", "co2"],
        description="Extra sections: a pyjokes board (/jokes/), a Mauna Loa CO2 table (/co2/).",
    )


def _check_css(css: str | None) -> None:
    """ValueError naming the selector unless parsel (what the crawl uses) can translate it."""
    if css is None:
        return
    from parsel.csstranslator import HTMLTranslator  # noqa: PLC0415 (~0.1 s: only with selectors)

    try:
        HTMLTranslator().css_to_xpath(css)
    except Exception as exc:  # cssselect's SelectorSyntaxError is a SyntaxError, not a ValueError
        raise ValueError(f"CSS selector {css!r} is not valid: {exc}") from None


# The namespaces parsel binds in every XPath (EXSLT regular expressions and sets).
_XPATH_NAMESPACES = {
    "re": "http://exslt.org/regular-expressions",
    "set": "http://exslt.org/sets",
}


def _check_xpath(xpath: str | None) -> None:
    """ValueError naming the expression unless lxml (what parsel runs) compiles it."""
    if xpath is None:
        return
    from lxml import etree  # noqa: PLC0415

    try:
        etree.XPath(xpath, namespaces=_XPATH_NAMESPACES)
    except etree.XPathError as exc:
        raise ValueError(f"XPath {xpath!r} is not valid: {exc}") from None


def _check_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:  # not a ValueError: pydantic would not report it
        raise ValueError(f"regex {pattern!r} is not valid: {exc}") from exc


class FieldSelector(_Section):
    """One field: where it is on the page (CSS or XPath), how to read it, whether it must exist."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    css: str | None = Field(
        None, description="CSS selector (parsel syntax, e.g. 'span.label::text'); or `xpath`."
    )
    xpath: str | None = Field(None, description="XPath selector (e.g. '//h1/text()'); or `css`.")
    regex: str | None = Field(
        None, description="Keep only the regex's first group (or whole match) of each value."
    )
    type: Literal["str", "int", "float", "date", "url", "list"] = Field(
        "str",
        description="str: text as written; int/float: a number ('1,234' ok); date: ISO "
        "YYYY-MM-DD; url: made absolute against the page; list: every match.",
    )
    date_format: str | None = Field(
        None, description="strptime format of a `date` field; None: ISO 8601 text."
    )
    cleanup: list[Literal["strip", "join", "html_text"]] = Field(
        default_factory=list,
        description="strip: collapse whitespace; join: all matches joined by a space; "
        "html_text: the matched markup to text through BeautifulSoup (messy HTML).",
    )
    required: bool = Field(True, description="A required field missing rejects the page.")
    from_: Literal["detail", "list"] = Field(
        "detail",
        alias="from",
        description="detail: read on the item page; list: read in the item's block on the list "
        "page that links to it (needs `crawl.item_list`).",
    )

    @model_validator(mode="after")
    def _one_selector(self) -> FieldSelector:
        if (self.css is None) == (self.xpath is None):
            raise ValueError("give exactly one of `css` or `xpath`")
        _check_css(self.css)
        _check_xpath(self.xpath)
        if self.regex is not None:
            _check_regex(self.regex)
        return self


class FollowRule(_Section):
    """Links to follow: those inside an area of the page, filtered by URL regexes."""

    css: str | None = Field(None, description="CSS selector of the link area (None: whole page).")
    xpath: str | None = Field(None, description="XPath of the link area; or `css`.")
    allow: list[str] = Field(
        default_factory=list, description="Follow only URLs matching one of these regexes."
    )
    deny: list[str] = Field(
        default_factory=list, description="Never follow URLs matching one of these regexes."
    )

    @model_validator(mode="after")
    def _valid_selectors(self) -> FollowRule:
        _check_css(self.css)
        _check_xpath(self.xpath)
        return self


class ItemListParams(_Section):
    """Item blocks on list pages: each block is an item, or links to the item's detail page."""

    css: str | None = Field(None, description="CSS selector of one item block (e.g. 'ul > li').")
    xpath: str | None = Field(None, description="XPath of one item block; or `css`.")
    link_css: str | None = Field(
        None,
        description="Inside the block, CSS of the detail page's URL (e.g. 'a::attr(href)'); "
        "None: the block is the whole item and every field is read in it.",
    )
    link_xpath: str | None = Field(None, description="XPath of the detail URL; or `link_css`.")

    @model_validator(mode="after")
    def _one_selector(self) -> ItemListParams:
        if (self.css is None) == (self.xpath is None):
            raise ValueError("give exactly one of `css` or `xpath`")
        if self.link_css is not None and self.link_xpath is not None:
            raise ValueError("give at most one of `link_css` or `link_xpath`")
        for css in (self.css, self.link_css):
            _check_css(css)
        for xpath in (self.xpath, self.link_xpath):
            _check_xpath(xpath)
        return self


class CrawlParams(_Section):
    start_urls: list[str] = Field(min_length=1, description="Where the crawl starts.")
    allowed_domains: list[str] = Field(min_length=1, description="Hosts the spider may visit.")
    allow_loopback: bool = Field(
        False, description="Permit 127.0.0.0/8 and localhost; true only for the demo site/tests."
    )
    allow_private: bool = Field(
        False, description="Permit private addresses (10/8, 172.16/12, 192.168/16, fc00::/7)."
    )
    spider: str | None = Field(
        None,
        description="'module:Class' of your own Scrapy spider in crawlers/spiders/ instead of "
        "the generic one; the same output, limits and safety settings apply.",
    )
    follow_css: list[str] = Field(
        default_factory=list,
        description="CSS selectors of link areas to follow (shorthand for `follow` rules).",
    )
    follow: list[FollowRule] = Field(
        default_factory=list, description="Link-follow rules: link areas with allow/deny regexes."
    )
    item_url_pattern: str | None = Field(
        None, description="Regex: pages whose URL matches it are item (detail) pages."
    )
    item_list: ItemListParams | None = Field(
        None, description="Item blocks on list pages (items spanning a list and a detail page)."
    )
    fields: dict[str, FieldSelector] = Field(min_length=1, description="Fields extracted per item.")
    image_field: str | None = Field(
        None, description="Field (in `fields`) holding an image URL to download; None: no image."
    )
    file_fields: list[str] = Field(
        default_factory=list,
        description="Fields (in `fields`) holding URLs of files to download besides the image "
        "(every URL of a `list` field); each is stored as files/<sha256>.<ext> and the row gets "
        "`<field>_path` (a list for a list field). A file that fails rejects its item.",
    )
    obey_robots: bool = Field(True, description="Obey robots.txt.")
    max_pages: int = Field(
        10_000,
        ge=1,
        description="Stop after this many pages: answers to the spider's requests (list and "
        "item pages, failed ones included), not robots.txt nor image/file downloads "
        "(`max_files`); reports/crawl.json `pages` counts the same. A crawl stopped here is "
        "partial (`allow_partial`).",
    )
    max_files: int | None = Field(
        None,
        ge=1,
        description="Stop after this many downloads of images and files (`image_field`, "
        "`file_fields`); reports/crawl.json `files` counts the same. None: no limit of its own. "
        "A crawl stopped here is partial (`allow_partial`).",
    )
    max_items: int | None = Field(
        None,
        ge=1,
        description="Stop after this many items. A crawl stopped here is partial "
        "(`allow_partial`).",
    )
    allow_partial: bool = Field(
        False,
        description="May a partial crawl (stopped by max_pages, max_files or max_items, or "
        "closed for any reason other than reaching its end) replace data/raw and be trained "
        "on? false: the crawl stage exits with status 3 naming the limit, data/raw and "
        "everything after it stay as they were.",
    )
    max_depth: int | None = Field(
        None, ge=1, description="Follow links at most this deep from a start URL (None: any)."
    )
    max_response_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        description="Drop a response bigger than this, also after decompression (gzip bombs).",
    )
    concurrency: int = Field(16, ge=1, le=256, description="Concurrent requests per domain.")
    download_timeout_s: float = Field(15.0, gt=0, le=600, description="Per-request timeout (s).")
    retries: int = Field(2, ge=0, le=10, description="Retries of a failed request (5xx, timeout).")
    retry_backoff_s: float = Field(
        0.25, ge=0, le=60, description="First retry waits this long (s), doubling each retry."
    )
    max_retry_after_s: float = Field(
        60.0, ge=0, le=3600, description="Cap on a server's Retry-After wait (s)."
    )
    http_cache: bool = Field(
        True,
        description="Keep an HTTP cache under .kiln/httpcache: a refresh sends conditional "
        "requests (RFC 9111) and gets 304 for what did not change.",
    )
    http_cache_max_mb: float = Field(
        512.0,
        gt=0,
        description="Bound on the disk .kiln/httpcache takes (MiB, as du counts it); after each "
        "crawl the least recently stored entries are removed until it fits.",
    )
    revisit_after_s: float = Field(
        0.0,
        ge=0,
        le=366 * 86400,
        description="An item page checked less than this many seconds ago is not requested on "
        "a refresh; its last row is kept (crawlers/revisit.py). List pages are re-checked on "
        "every crawl, so new and removed items are seen at once. 0: every item page is "
        "re-checked (a conditional request each) unless its server declared it fresh.",
    )
    user_agent: str = Field(
        "kiln-crawler/0.1 (+https://github.com/kiln)", description="User-Agent header."
    )

    @model_validator(mode="after")
    def _consistent(self) -> CrawlParams:
        if self.image_field is not None and self.image_field not in self.fields:
            raise ValueError(
                f"image_field {self.image_field!r} is not one of fields {sorted(self.fields)}"
            )
        for name in self.file_fields:
            if name not in self.fields or name == self.image_field:
                raise ValueError(f"file_fields entry {name!r} is not one of fields "
                                 f"{sorted(self.fields)} other than image_field")  # fmt: skip
            if f"{name}_path" in self.fields:
                raise ValueError(f"file_fields entry {name!r}: {name}_path is a field already")
        if self.spider is None and self.item_url_pattern is None and self.item_list is None:
            raise ValueError("say which pages are items: item_url_pattern and/or item_list")
        from_list = sorted(n for n, f in self.fields.items() if f.from_ == "list")
        if from_list and self.item_list is None:
            raise ValueError(f"fields {from_list} are `from: list` but item_list is not set")
        rules = [p for r in self.follow for p in (*r.allow, *r.deny)]
        for pattern in [self.item_url_pattern or "", *rules]:
            _check_regex(pattern)
        for css in self.follow_css:
            _check_css(css)
        return self


# Packages whose datasets ship inside the package (`source.loader`): loading one reads files
# installed with it and never downloads (scikit-learn's `fetch_*` functions download, so only
# functions named `load*` are allowed).
PACKAGED_DATASETS = ("sklearn.datasets", "statsmodels.datasets")
ROW_KEYS = ("url", "content_hash", "first_seen", "image_url", "image_path")  # every data/raw row's
_LOADER_NAME = re.compile(r"(?P<module>[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*):(?P<func>load\w*)")


def check_loader(loader: str) -> tuple[str, str]:
    """(module, function) of a `source.loader`; ValueError unless it names a `load*` function of
    a module in PACKAGED_DATASETS (nothing is imported here)."""
    match = _LOADER_NAME.fullmatch(loader)
    allowed = match and any(
        match["module"] == p or match["module"].startswith(p + ".") for p in PACKAGED_DATASETS
    )
    if not allowed:
        raise ValueError(
            f"source.loader {loader!r} is not 'module:load_function' of a packaged dataset "
            f"(modules under {list(PACKAGED_DATASETS)}, e.g. 'sklearn.datasets:load_digits', "
            "'statsmodels.datasets.co2:load_pandas'); these read data installed with the package, "
            "nothing is downloaded"
        )
    return match["module"], match["func"]


class SourceField(_Section):
    """One field of a non-crawl source: the column it comes from and its type, converted and
    required or optional as crawl fields are."""

    column: str | None = Field(None, description="The source's column (None: the field's name).")
    type: Literal["str", "int", "float", "date"] = Field(
        "str", description="str; int/float: a number ('1,234' ok); date: written as ISO YYYY-MM-DD."
    )
    date_format: str | None = Field(
        None, description="strptime format of a `date` field given as text; None: ISO 8601 text."
    )
    required: bool = Field(True, description="A required field missing rejects the row.")


class SourceParams(_Section):
    """Where data/raw comes from (tasks/core/sources.py): the crawl, or a table, a folder tree or a
    packaged dataset, each read into the same rows and hash-named files as the crawl writes."""

    kind: Literal["crawl", "table", "folder", "package"] = Field(
        "crawl",
        description="crawl: the `crawl` section; table: CSV, Parquet or JSON Lines file(s); "
        "folder: <path>/<class>/<file> (images or text files); package: a dataset that installs "
        "with a Python package (`loader`).",
    )
    path: str | None = Field(
        None,
        description="table: a file, a glob or a URL (fsspec: s3://, https://...) relative to the "
        "project; folder: the root directory.",
    )
    format: Literal["auto", "csv", "parquet", "jsonl"] = Field(
        "auto", description="table: the file format; auto: from the suffix."
    )
    encoding: str = Field("utf-8", description="table (csv, jsonl) and text files: the encoding.")
    files: Literal["image", "text"] = Field(
        "image", description="folder: each file is an image, or a text (column `text`)."
    )
    labelled: bool = Field(
        True,
        description="folder: true: <path>/<class>/<file>, the class in column `class`; false: "
        "<path>/<file>, `class` empty (label them with `kiln label export`).",
    )
    loader: str | None = Field(
        None, description="package: 'module:load_function', e.g. 'sklearn.datasets:load_digits'."
    )
    fields: dict[str, SourceField] = Field(
        default_factory=dict,
        description="The row's fields (label, text, image, time, value...) and their columns. "
        "Columns: a table's own; folder: class, file, text; package: its frame's columns, or "
        "target, target_name, image and the feature names of a scikit-learn dataset.",
    )
    image_field: str | None = Field(
        None,
        description="Field (in `fields`) holding an image: a file path (relative to the table's "
        "folder) or an image array; stored as images/<sha256>.<ext> and the row's image_path.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SourceParams:
        import codecs  # noqa: PLC0415

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"source.encoding {self.encoding!r} is not an encoding Python "
                             "knows (e.g. utf-8, latin-1, cp1252)") from None
        if self.kind == "crawl":
            return self
        if self.kind in ("table", "folder") and not self.path:
            raise ValueError(f"source.kind {self.kind} needs source.path")
        if self.kind == "package":
            if not self.loader:
                raise ValueError("source.kind package needs source.loader")
            check_loader(self.loader)
        if not self.fields:
            raise ValueError(f"source.kind {self.kind} needs source.fields")
        clash = sorted(set(self.fields) & set(ROW_KEYS))
        if clash:
            raise ValueError(f"source.fields may not be named {clash}: those are row keys")
        if self.image_field is not None and self.image_field not in self.fields:
            raise ValueError(
                f"image_field {self.image_field!r} is not one of fields {sorted(self.fields)}"
            )
        return self


class LabelParams(_Section):
    """The label set, shared by validate (what is allowed) and clean (how to normalise)."""

    classes: list[str] = Field(
        default_factory=list,
        description="Canonical class names, in order (>= 2 for classification; forecasting and "
        "text generation leave it empty). The label is the crawled field named `label`.",
    )
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Other spellings -> canonical class, matched after strip + lower-case.",
    )
    overrides: str = Field(
        "labels/overrides.csv",
        description="CSV `key,label` (key: sha256 of the image bytes) that wins over the crawled "
        "label in validate and clean; git-versioned, a DVC dependency of both; absent = none.",
    )

    @model_validator(mode="after")
    def _aliases_point_at_classes(self) -> LabelParams:
        twice = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if twice:
            raise ValueError(f"classes lists {twice} more than once")
        unknown = sorted({v for v in self.aliases.values() if v not in self.classes})
        if unknown:
            raise ValueError(f"aliases map to labels not in classes: {unknown}")
        return self


Severity = Literal["fail", "warn"]


class ExpectationSpec(_Section):
    """One Great Expectations 1.x expectation, by its snake_case name and arguments."""

    expectation: str = Field(description="GX name, e.g. expect_column_values_to_be_between.")
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="The expectation's arguments (column, min_value...)."
    )
    severity: Severity = Field(
        "fail", description="fail: failing rows are quarantined / the stage fails; warn: reported."
    )

    @model_validator(mode="after")
    def _known_to_gx(self) -> ExpectationSpec:
        # Imported here: GX costs ~4 s to import, paid only by params that declare expectations.
        from tasks.core.gx_check import check_expectation  # noqa: PLC0415

        problem = check_expectation(self.expectation, self.kwargs)
        if problem:
            raise ValueError(problem)
        return self


class DriftCheck(_Section):
    threshold: float = Field(ge=0.0, description="The statistic above this is drift.")
    severity: Severity = Field(description="fail: the stage fails on drift; warn: reported.")


class DriftParams(_Section):
    """Drift of the new validated data against the last DVC-recorded one (tasks/core/drift.py)."""

    # PSI: < 0.1 no shift, 0.1-0.25 moderate, > 0.25 major (the usual credit-scoring rule).
    label_psi: DriftCheck = Field(
        DriftCheck(threshold=0.25, severity="fail"), description="PSI of the label shares."
    )
    # KS statistic D (largest CDF gap), not its p-value, which goes to 0 with many rows.
    numeric_ks: DriftCheck = Field(
        DriftCheck(threshold=0.3, severity="warn"), description="KS D per numeric column."
    )
    image_mean_ks: DriftCheck = Field(
        DriftCheck(threshold=0.3, severity="fail"), description="KS D of mean image intensity."
    )
    text_length_ks: DriftCheck = Field(
        DriftCheck(threshold=0.3, severity="warn"),
        description="KS D of text length in characters (text tasks).",
    )
    row_count_change: DriftCheck = Field(
        DriftCheck(threshold=0.5, severity="warn"), description="|n_new - n_prev| / n_prev."
    )
    # A crawl that lost more than half its rows is far likelier broken (a site redesign, a
    # blocked crawler, a run killed half-way) than real: by default it does not train.
    row_drop: DriftCheck = Field(
        DriftCheck(threshold=0.5, severity="fail"),
        description="(n_prev - n_new) / n_prev when the new data has fewer rows, else 0.",
    )
    new_item_share: DriftCheck = Field(
        DriftCheck(threshold=0.5, severity="warn"),
        description="Share of rows whose content_hash the previous version lacked.",
    )


class ValidateParams(_Section):
    required_columns: list[str] = Field(description="Columns every crawled row must have.")
    non_null_columns: list[str] = Field(description="Columns that may not be empty.")
    min_rows: int = Field(ge=1, description="Fewer valid rows than this fails the stage.")
    max_quarantine_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Fail if more than this share of rows is quarantined (bad data, not noise).",
    )
    numeric_columns: list[str] = Field(
        default_factory=list,
        description="Columns parsed as numbers into `<column>_number` for expectations and drift.",
    )
    expectations: list[ExpectationSpec] = Field(
        default_factory=list,
        description="Expectations checked on top of the task type's defaults (gx_suite.py).",
    )
    drift: DriftParams = Field(DriftParams(), description="Drift checks between data versions.")


class MissingRule(_Section):
    """How one numeric column's missing (or unparseable) values are handled."""

    strategy: Literal["mean", "median", "mode", "constant", "drop"] = Field(
        description="Fill with the column's mean/median/mode or `value`, or drop the row."
    )
    value: float | None = Field(None, description="The fill value of strategy constant.")

    @model_validator(mode="after")
    def _constant_has_value(self) -> MissingRule:
        if (self.strategy == "constant") != (self.value is not None):
            raise ValueError("`value` is required with strategy constant, and only with it")
        return self


class OutlierRule(_Section):
    """Outliers of one numeric column (computed after missing values are handled)."""

    method: Literal["iqr", "zscore"] = Field(
        description="iqr: beyond k x IQR from the quartiles; zscore: robust |z| > k, with "
        "z = (x - median) / (1.4826 MAD), so that clipping does not move the bounds."
    )
    k: float = Field(gt=0.0, le=100.0, description="Tukey's k (1.5 usual) or the |z| limit (3.5).")
    action: Literal["clip", "drop"] = Field(description="Clip to the bounds or drop the row.")


class NearDuplicateParams(_Section):
    """Near-duplicate images: same 8x8 average hash, and close pixel by pixel."""

    enabled: bool = Field(True, description="Look for near-duplicate images.")
    # The average hash alone groups 66 of sklearn's 1797 distinct digits into 30 false pairs;
    # the closest of those differ by a mean 7.9 grey levels, so 4.0 never joins two real digits.
    max_mean_abs_diff: float = Field(
        4.0, ge=0.0, le=255.0, description="Mean |pixel difference| (grey levels 0-255) at most."
    )


class LabelReviewParams(_Section):
    """Likely wrong labels from cross-validated out-of-fold predictions (label_review.py)."""

    enabled: bool = Field(True, description="Look for likely wrong labels.")
    action: Literal["report", "drop", "relabel"] = Field(
        "report", description="report: list in reports/label_issues.csv only; drop or relabel."
    )
    folds: int = Field(5, ge=2, le=20, description="Cross-validation folds.")
    # On scikit-learn's 1797 digits with 10 labels flipped: confident_learning finds 7 of the 10
    # and flags 1 correct label; predicted_neq_given flags every row the model gets wrong out of
    # fold (high recall, many correct labels). Figures in tasks/core/label_review.py.
    filter_by: Literal[
        "confident_learning", "prune_by_noise_rate", "prune_by_class", "both", "predicted_neq_given"
    ] = Field("confident_learning", description="cleanlab's rule for a likely label error.")
    min_rows: int = Field(50, ge=10, description="Skip the review below this many rows.")


class TextCleanParams(_Section):
    """Text normalisation of the text tasks, applied in clean and again, identically, in serving."""

    column: str = Field("text", description="The crawled field holding the text.")
    nfkc: bool = Field(True, description="Unicode NFKC normalisation (full-width, ligatures...).")
    strip_html: bool = Field(True, description="Remove HTML tags/entities left in the text.")
    collapse_whitespace: bool = Field(True, description="Runs of whitespace -> one space, trimmed.")
    lowercase: bool = Field(False, description="Lower-case everything.")
    min_chars: int = Field(1, ge=1, description="Shorter texts (after normalising) are rejected.")
    near_duplicates: bool = Field(
        True,
        description="Texts equal after normalising, case-folding and dropping punctuation "
        "are duplicates: one is kept, the others recorded.",
    )


class CleanParams(_Section):
    numeric_columns: list[str] = Field(
        default_factory=list, description="Metadata columns parsed as numbers."
    )
    impute: Literal["mean", "median", "zero"] = Field(
        "mean", description="How missing numeric values are filled (columns not in `missing`)."
    )
    missing: dict[str, MissingRule] = Field(
        default_factory=dict, description="Per numeric column: how missing values are handled."
    )
    outliers: dict[str, OutlierRule] = Field(
        default_factory=dict, description="Per numeric column: outliers clipped or dropped."
    )
    label_review: LabelReviewParams = Field(
        LabelReviewParams(), description="Detection of likely wrong labels."
    )
    val_share: float = Field(0.15, gt=0.0, lt=0.5, description="Share of items in validation.")
    test_share: float = Field(0.15, gt=0.0, lt=0.5, description="Share of items in test.")
    split_salt: str = Field(
        "kiln", description="Salt of the stable hash split; change it to draw a new split."
    )

    @model_validator(mode="after")
    def _rules_name_numeric_columns(self) -> CleanParams:
        unknown = sorted((set(self.missing) | set(self.outliers)) - set(self.numeric_columns))
        if unknown:
            raise ValueError(f"missing/outliers name columns not in numeric_columns: {unknown}")
        return self


class TextModelParams(_Section):
    """How text becomes token ids; saved in the model card so serving tokenises the same way."""

    tokenizer: Literal["char", "byte", "minilm"] = Field(
        "char",
        description="char: the train split's most frequent characters; byte: UTF-8 bytes "
        "(256 ids); minilm: the WordPiece vocabulary of the pretrained MiniLM (model minilm only).",
    )
    max_len: int = Field(128, ge=8, le=4096, description="Tokens per text (longer: cut).")
    vocab_size: int = Field(
        512, ge=16, le=100_000, description="char tokenizer: most frequent characters kept."
    )


class DistributedParams(_Section):
    """`train.distributed`: data-parallel training of a torch model under torchrun (DDP).

    One process (the default) is today's single-process loop. More: the train stage re-launches
    itself as `python -m torch.distributed.run ... -m tasks.train`; each process trains on its
    shard of every global batch of `train.batch_size` (docs/scaling.md).
    """

    nproc_per_node: int = Field(
        1, ge=1, le=1024, description="Processes on this machine (one per GPU; 1: no torchrun)."
    )
    nnodes: int = Field(
        1, ge=1, le=1024, description="Machines; each runs the train stage with these params."
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="torch.distributed backend; auto: nccl on CUDA, gloo on the CPU."
    )
    rdzv_endpoint: str | None = Field(
        None,
        description="host:port of torchrun's c10d rendezvous, one every machine reaches "
        "(required when nnodes > 1; one machine uses a free local port).",
    )

    @property
    def processes(self) -> int:
        """The world size: processes on all machines together."""
        return self.nproc_per_node * self.nnodes

    @model_validator(mode="after")
    def _rendezvous(self) -> DistributedParams:
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            raise ValueError(
                f"train.distributed.nnodes {self.nnodes} needs rdzv_endpoint (host:port that "
                "every machine reaches) to meet at"
            )
        if self.rdzv_endpoint is not None and not re.fullmatch(
            r"[A-Za-z0-9.\-]+:\d{1,5}|\[[0-9A-Fa-f:]+\]:\d{1,5}", self.rdzv_endpoint
        ):
            raise ValueError(
                f"train.distributed.rdzv_endpoint {self.rdzv_endpoint!r} is not host:port"
            )
        return self


class TrainParams(_Section):
    model: str = Field(description="Architecture; each task type lists the ones it can train.")
    epochs: int = Field(30, ge=1, le=10_000, description="Maximum epochs.")
    batch_size: int = Field(64, ge=1, le=65_536, description="Samples per step.")
    lr: float = Field(3e-3, gt=0.0, le=10.0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0, description="AdamW weight decay.")
    patience: int = Field(
        5, ge=1, description="Early stopping: epochs without val-loss improvement."
    )
    seed: int = Field(0, description="Seed for init and batch order.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="auto: CUDA if present, else MPS, else CPU."
    )
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="AdamW or SGD (momentum 0.9).")
    grad_clip: float = Field(0.0, ge=0.0, description="Max global gradient L2 norm; 0: off.")
    schedule: Literal["constant", "cosine"] = Field(
        "constant", description="Learning rate: constant, or linear warmup then cosine decay."
    )
    warmup_steps: int = Field(0, ge=0, description="Optimizer steps of linear warmup (cosine).")
    monitor: str = Field(
        "val_loss",
        description="Validation metric for early stopping and the best epoch: val_loss, or "
        "val_acc (classification), val_mae/val_rmse (forecasting), val_ppl (generation).",
    )
    compile: bool = Field(False, description="torch.compile the model (pays off on a GPU).")
    distributed: DistributedParams = Field(
        DistributedParams(),
        description="Data-parallel training on several processes under torchrun (DDP).",
    )

    def checkpoint_dump(self) -> dict[str, Any]:
        """The params a checkpoint key hashes: all but `distributed`, so a run resumes on another
        number of processes (the global batch and the data order do not depend on it)."""
        return self.model_dump(mode="json", exclude={"distributed"})

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainParams:
        world = self.distributed.processes
        if self.batch_size % world:
            raise ValueError(
                f"train.batch_size {self.batch_size} is the global batch: it must divide evenly "
                f"among the {world} processes of train.distributed (nproc_per_node "
                f"{self.distributed.nproc_per_node} x nnodes {self.distributed.nnodes})"
            )
        if self.distributed.backend == "nccl" and self.device in ("cpu", "mps"):
            raise ValueError(f"train.distributed.backend nccl needs CUDA, not device {self.device}")
        if world > 1 and self.device == "mps":
            raise ValueError("train.distributed: neither gloo nor nccl runs on MPS; device cpu?")
        return self


class EvaluateParams(_Section):
    """The evaluate stage's settings; each task type adds its own (a floor, a baseline)."""


class ExportParams(_Section):
    """ONNX export of models/ (tasks/export.py) and its parity check against PyTorch."""

    opset: int = Field(17, ge=13, le=20, description="ONNX opset (the TorchScript exporter's).")
    # float32 logits of the same graph differ by ~1e-6 between ORT and PyTorch kernels; 1e-4
    # leaves room for other CPUs' vector paths while catching any real difference.
    atol: float = Field(
        1e-4, gt=0.0, le=1.0, description="Largest allowed |ORT - PyTorch| logit difference."
    )
    parity_batch: int = Field(
        64, ge=1, le=4096, description="Test images in the fixed parity batch (plus 3 synthetic)."
    )


class PromoteFloors(_Section):
    """Absolute floors a challenger must clear, even with no champion to beat.

    Each applies when the task type reports that metric: accuracy/macro_f1 are minimums
    (classification); mae, rmse, mape (forecasting), val_loss and perplexity (generation) are
    maximums, None meaning no limit.
    """

    accuracy: float = Field(0.0, ge=0.0, le=1.0, description="Minimum test accuracy.")
    macro_f1: float = Field(0.0, ge=0.0, le=1.0, description="Minimum test macro-F1.")
    mae: float | None = Field(None, gt=0.0, description="Maximum test MAE (series unit).")
    rmse: float | None = Field(None, gt=0.0, description="Maximum test RMSE (series unit).")
    mape: float | None = Field(None, gt=0.0, description="Maximum test MAPE (percent).")
    val_loss: float | None = Field(None, gt=0.0, description="Maximum test loss (nats/token).")
    perplexity: float | None = Field(None, gt=0.0, description="Maximum test perplexity.")


class PromoteParams(_Section):
    """When the newly trained model (challenger) replaces the champion (tasks/promote.py)."""

    metric: Literal["accuracy", "macro_f1", "mae", "rmse", "mape", "val_loss", "perplexity"] = (
        Field(
            "macro_f1",
            description="Compared between challenger and champion, both on the current test "
            "split: accuracy/macro_f1 (classification, higher is better), mae/rmse/mape "
            "(forecasting) or val_loss/perplexity (generation), lower is better. Default: the "
            "task type's first headline metric (macro_f1, mae, val_loss).",
        )
    )
    min_improvement: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="challenger - champion must be at least this: 0 means 'must not drop' (a "
        "tie promotes the newer model), 0.005 means half a point better.",
    )
    floors: PromoteFloors = Field(PromoteFloors(), description="Absolute minimums.")
    min_margin_over_baseline: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="How much the challenger must beat the best baseline of reports/metrics.json "
        "(majority class, a classical model, naive forecasts, an n-gram model) on `metric`: for "
        "accuracy/macro_f1 in absolute points (0.01: one point above), for the lower-is-better "
        "metrics relative to the baseline (0.01: at least 1% lower). 0: a tie is enough.",
    )
    baseline_gate: bool = Field(
        True,
        description="Refuse a challenger that does not beat the best baseline by "
        "min_margin_over_baseline. false: the baselines are reported only (tests of the plumbing "
        "with one-epoch models; a task type that reports no baselines).",
    )


class ServeParams(_Section):
    """`kiln serve`: the HTTP prediction service for the champion (serve/)."""

    host: str = Field("127.0.0.1", description="Bind address; loopback unless put behind a proxy.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    backend: Literal["onnx", "torch"] = Field(
        "onnx", description="onnx: ONNX Runtime, no torch needed; torch: the safetensors model."
    )
    max_batch: int = Field(256, ge=1, le=65_536, description="Most instances per request.")
    max_body_bytes: int = Field(
        1 << 20,
        ge=1024,
        le=1 << 30,
        description="Larger request bodies get 413, with or without Content-Length (bytes).",
    )
    reload_interval_s: float = Field(
        1.0, gt=0.0, le=3600, description="How often the registry is checked for a new champion."
    )
    # The digits CNN is ~2 MFLOP per image (0.9 M multiply-adds): one thread per request avoids
    # ORT's thread-pool spin-up and leaves the other cores to concurrent requests.
    onnx_threads: int = Field(1, ge=1, le=256, description="ONNX Runtime intra-op threads.")


# Prefect's cron schedules take these names as well as five fields (its vendored croniter).
_CRON_NAMES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class ScheduleParams(_Section):
    cron: str = Field("0 3 * * *", description="When the refresh-and-retrain deployment runs.")
    timezone: str = Field("UTC", description="IANA time zone of the cron.")

    @model_validator(mode="after")
    def _valid_schedule(self) -> ScheduleParams:
        import zoneinfo  # noqa: PLC0415
        from datetime import datetime  # noqa: PLC0415

        # cronsim: Prefect's cron parser's own dependency, 8 ms to import (Prefect itself: ~2 s)
        from cronsim import CronSim, CronSimError  # noqa: PLC0415

        if self.cron.strip().lower() not in _CRON_NAMES:
            try:
                CronSim(self.cron, datetime(2000, 1, 1))
            except CronSimError as exc:
                raise ValueError(
                    f"cron {self.cron!r} is not a cron expression ({exc}): five fields "
                    "'minute hour day month weekday', e.g. '0 3 * * 2' for Tuesdays at 03:00"
                ) from None
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone {self.timezone!r} is not an IANA time zone (e.g. 'UTC', "
                "'Europe/Paris')"
            ) from None
        return self


class NotifyParams(_Section):
    """Who hears of a failed run and of a promotion: Prefect notification blocks, called by the
    refresh-and-retrain flow (flows/notify.py). Nothing is sent unless a webhook or block is set."""

    events: list[Literal["failure", "promotion"]] = Field(
        default_factory=lambda: ["failure", "promotion"],
        description="What is notified: a failed run (the stage and why), a promotion.",
    )
    webhooks: list[str] = Field(
        default_factory=list,
        description="URLs that get a JSON POST ({\"text\", \"subject\", \"body\"}), each through a "
        "Prefect Custom Webhook block saved as kiln-<project>-webhook-<n>.",
    )
    blocks: list[str] = Field(
        default_factory=list,
        description="Notification blocks saved in Prefect, as '<block-type>/<name>' (e.g. "
        "slack-webhook/team-alerts, sendgrid-email/ops): their secrets stay in Prefect.",
    )

    @model_validator(mode="after")
    def _urls_and_slugs(self) -> NotifyParams:
        for url in self.webhooks:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"webhook {url!r} is not an http(s) URL")
        for slug in self.blocks:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]*/[A-Za-z0-9][A-Za-z0-9_-]*", slug):
                raise ValueError(
                    f"block {slug!r} is not '<block-type>/<name>' (e.g. slack-webhook/alerts)"
                )
        return self


SweepValue = int | float | str | bool


class SweepSpace(_Section):
    """What one key takes in a sweep: a grid or a choice list of values, or a range."""

    grid: list[SweepValue] | None = Field(
        None, min_length=1, description="Values to try; the grid sampler tries every one."
    )
    choice: list[SweepValue] | None = Field(
        None, min_length=1, description="Values to choose from (a categorical parameter)."
    )
    range: tuple[int | float, int | float] | None = Field(
        None,
        description="[low, high], both included; integers when both ends (and `step`) are.",
    )
    log: bool = Field(False, description="A range sampled on a log scale (low > 0).")
    step: int | float | None = Field(
        None, gt=0, description="A range's step (the grid sampler needs one to list its values)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> SweepSpace:
        given = [k for k in ("grid", "choice", "range") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of grid, choice or range (got {given or 'none'})")
        if self.range is None:
            if self.log or self.step is not None:
                raise ValueError("`log` and `step` go with a range")
            return self
        low, high = self.range
        if not low < high:
            raise ValueError(f"range [{low}, {high}]: low must be below high")
        if self.log and (low <= 0 or self.step is not None):
            raise ValueError("a log range needs low > 0 and no step")
        return self


class SweepParams(_Section):
    """`kiln sweep`: a hyperparameter search, each trial a DVC experiment (flows/sweep.py)."""

    name: str = Field(
        "sweep",
        pattern=r"^[a-z][a-z0-9-]{0,40}$",
        description="The sweep's name: its trials are the DVC experiments <name>-<n>.",
    )
    sampler: Literal["grid", "random", "tpe"] = Field(
        "tpe",
        description="grid: every combination; random; tpe: Optuna's TPE, which proposes values "
        "near those of the best trials so far.",
    )
    params: dict[str, SweepSpace] = Field(
        min_length=1,
        description="Dotted params keys to vary (e.g. train.lr), each with its values. Only "
        "keys of train and the stages after it: the stages before are not re-run per trial.",
    )
    metric: str | None = Field(
        None,
        pattern=r"^val_",
        description="The validation metric (per epoch, from training) the search optimises; "
        "None: the twin of the task type's first headline metric (val_macro_f1, val_mae, "
        "val_loss). Never a test metric: the test split only reports.",
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="None: maximize val_acc and val_macro_f1, minimize the others."
    )
    trials: int | None = Field(
        None, ge=1, le=10_000, description="At most this many trials (grid: all by default)."
    )
    timeout_s: float | None = Field(
        None, gt=0, description="No new trial starts after this many seconds (s)."
    )
    jobs: int = Field(1, ge=1, le=64, description="Trials at a time (`--jobs` overrides).")
    prune: bool = Field(
        True,
        description="Stop a trial whose validation metric, at an epoch, is worse than the "
        "median of the earlier trials at that epoch (Optuna's MedianPruner).",
    )
    startup_trials: int = Field(
        3,
        ge=0,
        description="Trials before TPE models the results (random until then) and before the "
        "pruner prunes.",
    )
    warmup_epochs: int = Field(1, ge=0, description="Epochs of every trial never pruned.")
    seed: int = Field(0, description="Seed of the sampler: the same sweep proposes the same.")
    overfit_drop: float = Field(
        0.02,
        ge=0.0,
        description="The summary flags a trial whose metric ended worse than its peak by more "
        "than this share of the peak (0.02: 2 %) while its train loss kept falling.",
    )

    @model_validator(mode="after")
    def _has_a_budget(self) -> SweepParams:
        if self.sampler != "grid" and self.trials is None and self.timeout_s is None:
            raise ValueError(f"a {self.sampler} sweep needs a budget: trials and/or timeout_s")
        if self.sampler == "grid":
            endless = sorted(
                k for k, s in self.params.items() if s.range is not None and s.step is None
            )
            if endless:
                raise ValueError(f"the grid sampler needs a step for the ranges of {endless}")
        return self


class StorageParams(_Section):
    """Where each successful refresh is kept beyond this machine (docs/storage.md): a DVC remote
    that receives every stage output and registry version, and a git branch that receives one
    commit per refresh. No remote (the default): nothing is pushed and nothing committed."""

    remote: str | None = Field(
        None,
        description="DVC remote: a directory path (relative paths are the project's), "
        "s3://bucket/prefix, gs://bucket/prefix, ssh://host/path, azure://container/path, ...",
    )
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, Ceph, ...) for an s3:// remote."
    )
    branch: str = Field(
        "kiln-refreshes", description="The git branch that receives one commit per refresh."
    )

    @model_validator(mode="after")
    def _valid_branch(self) -> StorageParams:
        name = self.branch
        parts = name.split("/")
        if (not re.fullmatch(r"[A-Za-z0-9._/-]+", name) or ".." in name or name.startswith("-")
                or any(not part or part.startswith(".") or part.endswith(".lock")
                       for part in parts) or name.endswith(".")):
            raise ValueError(f"storage.branch {name!r} is not a git branch name (letters, "
                             "digits, '.', '_', '-', '/'; e.g. 'kiln-refreshes')")
        if self.endpoint_url is not None and not (self.remote or "").startswith("s3://"):
            raise ValueError("storage.endpoint_url is for an s3:// remote; storage.remote is "
                             f"{self.remote!r}")
        return self


class Params(_Section):
    """The sections every task type has. Each task type subclasses it (its `params`), replacing
    sections with subclasses that add its own keys, so a forecaster has no CNN knobs and a typo
    in a key of another task type is an unknown key. `parse_params` picks the subclass by
    `project.task`: a union discriminated by that key."""

    # The test metrics this task type reports that promote can compare (promote.metric); the
    # first is promote.metric's default.
    HEADLINE_METRICS: ClassVar[tuple[str, ...]] = ()

    project: ProjectParams
    demo_site: DemoSiteParams = DemoSiteParams()
    crawl: CrawlParams | None = None  # required when source.kind is crawl (the default)
    labels: LabelParams = LabelParams()
    validate_: ValidateParams = Field(alias="validate")
    clean: CleanParams = CleanParams()
    train: TrainParams
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()
    promote: PromoteParams = PromoteParams()
    serve: ServeParams = ServeParams()
    schedule: ScheduleParams = ScheduleParams()
    source: SourceParams = SourceParams()
    sweep: SweepParams | None = None  # `kiln sweep`; no stage reads it
    notify: NotifyParams = NotifyParams()  # flows/notify.py; no stage reads it
    storage: StorageParams = StorageParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _promote_metric_defaults_to_the_headline(cls, data: Any) -> Any:
        promote = data.get("promote", {}) if isinstance(data, dict) else None
        if cls.HEADLINE_METRICS and isinstance(promote, dict) and "metric" not in promote:
            return {**data, "promote": {**promote, "metric": cls.HEADLINE_METRICS[0]}}
        return data

    @model_validator(mode="after")
    def _crawl_when_crawling(self) -> Params:
        if self.source.kind == "crawl" and self.crawl is None:
            raise ValueError("'crawl': Field required when source.kind is crawl (the default)")
        return self

    @model_validator(mode="after")
    def _promote_metric_is_measured(self) -> Params:
        measured = type(self).HEADLINE_METRICS
        if measured and self.promote.metric not in measured:
            raise ValueError(
                f"promote.metric {self.promote.metric!r} is not measured for "
                f"{self.project.task}; choose one of {list(measured)}"
            )
        return self


class TextTaskCleanParams(CleanParams):
    """The clean section of the text task types: the text column and its normalisation."""

    text: TextCleanParams = Field(TextCleanParams(), description="Text normalisation.")


class TransformerTrainParams(TrainParams):
    """The train section of the task types that train a Transformer on token ids."""

    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout in the Transformer blocks.")
    d_model: int = Field(64, ge=4, le=4096, description="Transformer width.")
    layers: int = Field(2, ge=1, le=48, description="Transformer blocks.")
    heads: int = Field(4, ge=1, le=64, description="Attention heads (divides d_model).")
    text: TextModelParams = Field(TextModelParams(), description="Tokenisation.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerTrainParams:
        if self.d_model % self.heads:
            raise ValueError(f"train.heads {self.heads} must divide d_model {self.d_model}")
        return self


class ClassificationEvaluateParams(EvaluateParams):
    min_accuracy: float = Field(
        0.0, ge=0.0, le=1.0, description="Fail the stage if test accuracy is below this."
    )


class ClassificationParams(Params):
    """The base of the task types that learn labels.classes (images, texts)."""

    HEADLINE_METRICS: ClassVar[tuple[str, ...]] = ("macro_f1", "accuracy")

    evaluate: ClassificationEvaluateParams = ClassificationEvaluateParams()

    @model_validator(mode="after")
    def _has_classes(self) -> ClassificationParams:
        if len(self.labels.classes) < 2:
            raise ValueError(f"{self.project.task} needs labels.classes with at least 2 classes")
        return self


class ParamsError(ValueError):
    """params.yaml is unreadable or does not match the schema."""


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _model_at(root: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at `path` (None if not a model).

    Follows model fields, and the values of `dict[str, Model]` / items of `list[Model]` fields
    (whose keys or indexes are part of the path, e.g. `crawl.fields.label`).
    """
    current: Any = root
    for part in path:
        if get_origin(current) is UnionType:  # `Model | None`: the model
            current = next((a for a in get_args(current) if _is_model(a)), None)
        if _is_model(current):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            if part not in fields:
                return None
            current = fields[part].annotation
        elif get_origin(current) in (dict, list):
            current = get_args(current)[-1]  # the value / item type; `part` is a key or index
        else:
            return None
    if get_origin(current) is UnionType:
        current = next((a for a in get_args(current) if _is_model(a)), None)
    return current if _is_model(current) else None


def _describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        owner = _model_at(root, loc[:-1])
        hint = ""
        if owner is not None:
            close = difflib.get_close_matches(str(loc[-1]), _field_names(owner), n=1, cutoff=0.5)
            if close:
                prefix = ".".join(str(p) for p in loc[:-1])
                hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?"
        return f"unknown key '{where}'{hint}"
    if not loc:  # a check across sections (a model validator): its message names the keys
        return str(error["msg"]).removeprefix("Value error, ")
    if isinstance(error.get("input"), dict):
        # a check across one section's keys (e.g. a task type's train section): its message names
        # them, and the whole section is not dumped after it
        return f"'{where}': {str(error['msg']).removeprefix('Value error, ')}"
    got = repr(error.get("input"))
    if len(got) > MAX_SHOWN:  # a long list or string: its start says what it is
        got = f"{got[:MAX_SHOWN]}… ({len(got):,} characters)"
    return f"'{where}': {error['msg']} (got {got})"


def params_model(raw: dict[str, Any]) -> type[Params]:
    """The params model of the task type `raw` names in project.task (the base model when it
    names none, so validating reports the missing key)."""
    project = raw.get("project")
    task = project.get("task") if isinstance(project, dict) else None
    if not isinstance(task, str):
        return Params
    try:
        return task_type(task).params
    except UnknownTaskType as exc:
        raise ParamsError(f"params.yaml is invalid:\n  'project.task': {exc}") from None


def parse_params(raw: dict[str, Any]) -> Params:
    model = params_model(raw)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "\n  ".join(_describe(e, model) for e in exc.errors())
        raise ParamsError(f"params.yaml is invalid:\n  {problems}") from None


def tracked_keys(dvc_yaml: Path) -> list[str]:
    """The params keys the stages of `dvc_yaml` list (DVC refuses to run or record a stage when
    one is missing from params.yaml, even where the schema has a default)."""
    text = dvc_yaml.read_text(encoding="utf-8")
    stages = (yaml.load(text, Loader=_LOADER) or {}).get("stages")  # noqa: S506 (a safe loader)
    keys = {k for stage in (stages or {}).values() for k in stage.get("params", []) or []}
    return sorted(k for k in keys if isinstance(k, str))  # {file: [keys]} entries: not ours


def missing_keys(raw: dict[str, Any], keys: list[str]) -> list[str]:
    """The dotted `keys` that `raw` (a parsed params file) does not hold."""

    def has(dotted: str) -> bool:
        node: Any = raw
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    return [k for k in keys if not has(k)]


def complete(params: Params) -> dict[str, Any]:
    """Every key of `params` with its value, defaults included: a file DVC can always track."""
    return params.model_dump(mode="json", by_alias=True)


def _check_size(raw: Any, path: Path) -> None:
    """ParamsError when `raw` holds more than MAX_VALUES values or nests deeper than MAX_DEPTH;
    the walk stops at the first excess, so an alias bomb costs at most MAX_VALUES steps."""
    stack, count = [(raw, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ParamsError(
                f"{path} expands to more than {MAX_VALUES:,} values (YAML aliases that refer to "
                "aliases?); a params file holds a few hundred"
            )
        if depth > MAX_DEPTH:
            raise ParamsError(f"{path} nests mappings or lists deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def read_params_file(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506 (safe)
    except FileNotFoundError:
        raise ParamsError(f"{path} not found") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(
            f"{path} is not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start}"
        ) from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise ParamsError(f"{path} nests mappings or lists far deeper than {MAX_DEPTH}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    _check_size(raw, path)
    return raw


def load_params(path: Path | str = DEFAULT_PARAMS_PATH, dvc_yaml: Path | None = None) -> Params:
    """params.yaml parsed into its task type's model. When a dvc.yaml is given, or lies beside
    the file, every key it tracks must be written in the file: ParamsError names the missing
    ones (`kiln check --write` writes the defaults in)."""
    path = Path(path)
    raw = read_params_file(path)
    params = parse_params(raw)
    dvc_yaml = dvc_yaml or path.parent / "dvc.yaml"
    if dvc_yaml.is_file() and (missing := missing_keys(raw, tracked_keys(dvc_yaml))):
        raise ParamsError(
            f"{path} lacks keys that {dvc_yaml.name} tracks (DVC refuses a stage whose params "
            f"are not in the file, defaults or not): {', '.join(missing)}; `kiln check --write` "
            "writes every key with its value"
        )
    return params


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    params = load_params(argv[0] if argv else DEFAULT_PARAMS_PATH)
    print(yaml.safe_dump(params.model_dump(by_alias=True), sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
