"""The params.yaml schema: `python -m tasks.params [params.yaml]` checks a file and prints it.

Every stage reads its section through `load_params()`, which parses the whole file once into
frozen pydantic models that reject unknown keys. A typo fails before any work with the key's full
path and the closest valid name; an out-of-range value names the field and the bound.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PARAMS_PATH = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectParams(_Section):
    name: str = Field(description="Project name, used for the Prefect flow run and deployment.")
    task: Literal["image_classification"] = Field(
        description="What the model learns; only image classification exists so far."
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


class FieldSelector(_Section):
    css: str = Field(description="CSS selector (Scrapy/parsel syntax, e.g. 'span.label::text').")
    required: bool = Field(True, description="A required field missing rejects the page.")


class CrawlParams(_Section):
    start_urls: list[str] = Field(min_length=1, description="Where the crawl starts.")
    allowed_domains: list[str] = Field(min_length=1, description="Hosts the spider may visit.")
    allow_loopback: bool = Field(
        False, description="Permit 127.0.0.0/8 and localhost; true only for the demo site/tests."
    )
    follow_css: list[str] = Field(
        description="CSS selectors of link areas to follow (pagination, item links)."
    )
    item_url_pattern: str = Field(description="Regex: URLs matching it are item pages.")
    fields: dict[str, FieldSelector] = Field(description="Fields extracted from item pages.")
    image_field: str = Field(description="Name of the field (in `fields`) holding the image URL.")
    obey_robots: bool = Field(True, description="Obey robots.txt.")
    max_pages: int = Field(10_000, ge=1, description="Stop after this many responses.")
    concurrency: int = Field(16, ge=1, le=256, description="Concurrent requests per domain.")
    download_timeout_s: float = Field(15.0, gt=0, le=600, description="Per-request timeout (s).")
    retries: int = Field(2, ge=0, le=10, description="Retries of a failed request (5xx, timeout).")
    user_agent: str = Field(
        "kiln-crawler/0.1 (+https://github.com/kiln)", description="User-Agent header."
    )

    @model_validator(mode="after")
    def _image_field_is_a_field(self) -> CrawlParams:
        if self.image_field not in self.fields:
            raise ValueError(
                f"image_field {self.image_field!r} is not one of fields {sorted(self.fields)}"
            )
        return self


class LabelParams(_Section):
    """The label set, shared by validate (what is allowed) and clean (how to normalise)."""

    classes: list[str] = Field(min_length=2, description="Canonical class names, in order.")
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Other spellings -> canonical class, matched after strip + lower-case.",
    )

    @model_validator(mode="after")
    def _aliases_point_at_classes(self) -> LabelParams:
        unknown = sorted({v for v in self.aliases.values() if v not in self.classes})
        if unknown:
            raise ValueError(f"aliases map to labels not in classes: {unknown}")
        return self


class ValidateParams(_Section):
    required_columns: list[str] = Field(description="Columns every crawled row must have.")
    non_null_columns: list[str] = Field(description="Columns that may not be empty.")
    image_width: int = Field(ge=1, le=4096, description="Expected image width in pixels.")
    image_height: int = Field(ge=1, le=4096, description="Expected image height in pixels.")
    min_rows: int = Field(ge=1, description="Fewer valid rows than this fails the stage.")
    max_quarantine_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Fail if more than this share of rows is quarantined (bad data, not noise).",
    )


class CleanParams(_Section):
    numeric_columns: list[str] = Field(
        default_factory=list, description="Metadata columns parsed as numbers."
    )
    impute: Literal["mean", "median", "zero"] = Field(
        "mean", description="How missing numeric values are filled."
    )
    val_share: float = Field(0.15, gt=0.0, lt=0.5, description="Share of items in validation.")
    test_share: float = Field(0.15, gt=0.0, lt=0.5, description="Share of items in test.")
    split_salt: str = Field(
        "kiln", description="Salt of the stable hash split; change it to draw a new split."
    )


class TrainParams(_Section):
    model: Literal["cnn"] = Field("cnn", description="Architecture.")
    epochs: int = Field(30, ge=1, le=10_000, description="Maximum epochs.")
    batch_size: int = Field(64, ge=1, le=65_536, description="Samples per step.")
    lr: float = Field(3e-3, gt=0.0, le=10.0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0, description="AdamW weight decay.")
    patience: int = Field(
        5, ge=1, description="Early stopping: epochs without val-loss improvement."
    )
    channels: int = Field(32, ge=1, le=1024, description="Width of the first conv layer.")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="Dropout before the classifier.")
    seed: int = Field(0, description="Seed for init and batch order.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA if present.")


class EvaluateParams(_Section):
    min_accuracy: float = Field(
        0.0, ge=0.0, le=1.0, description="Fail the stage if test accuracy is below this."
    )


class ScheduleParams(_Section):
    cron: str = Field("0 3 * * *", description="When the refresh-and-retrain deployment runs.")
    timezone: str = Field("UTC", description="IANA time zone of the cron.")


class Params(_Section):
    project: ProjectParams
    demo_site: DemoSiteParams = DemoSiteParams()
    crawl: CrawlParams
    labels: LabelParams
    validate_: ValidateParams = Field(alias="validate")
    clean: CleanParams = CleanParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    schedule: ScheduleParams = ScheduleParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ParamsError(ValueError):
    """params.yaml is unreadable or does not match the schema."""


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at `path` (None if not a model).

    Follows model fields, and the values of `dict[str, Model]` / items of `list[Model]` fields
    (whose keys or indexes are part of the path, e.g. `crawl.fields.label`).
    """
    current: Any = Params
    for part in path:
        if _is_model(current):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            if part not in fields:
                return None
            current = fields[part].annotation
        elif get_origin(current) in (dict, list):
            current = get_args(current)[-1]  # the value / item type; `part` is a key or index
        else:
            return None
    return current if _is_model(current) else None


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        owner = _model_at(loc[:-1])
        hint = ""
        if owner is not None:
            close = difflib.get_close_matches(str(loc[-1]), _field_names(owner), n=1, cutoff=0.5)
            if close:
                prefix = ".".join(str(p) for p in loc[:-1])
                hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?"
        return f"unknown key '{where}'{hint}"
    return f"'{where}': {error['msg']} (got {error.get('input')!r})"


def parse_params(raw: dict[str, Any]) -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        problems = "\n  ".join(_describe(e) for e in exc.errors())
        raise ParamsError(f"params.yaml is invalid:\n  {problems}") from None


def load_params(path: Path | str = DEFAULT_PARAMS_PATH) -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path} not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    params = load_params(argv[0] if argv else DEFAULT_PARAMS_PATH)
    print(yaml.safe_dump(params.model_dump(by_alias=True), sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
