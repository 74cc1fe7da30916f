"""The Great Expectations 1.x suite of `python -m tasks.validate`: built from params, run, rendered.

Kept apart from the stage so that GX's API, which moved a lot between 0.x and 1.x, is touched in
one place. `RawItemsSuite` holds one in-memory ("ephemeral") GX context; every run of the stage
(all rows, then the rows left after quarantine) is stored in it, and `write_docs` renders them
all as Data Docs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig

from tasks.core.data_docs import localize
from tasks.core.gx_check import build
from tasks.core.params import ExpectationSpec, LabelParams, ValidateParams
from tasks.core.validate_derive import IMAGES, TaskColumns

# COMPLETE: every failing row's index, not GX's default sample of 20.
_RESULT_FORMAT = {"result_format": "COMPLETE"}
_SITE = "kiln"


@dataclass(frozen=True)
class Check:
    """One expectation's result, flattened."""

    name: str  # "expect_column_values_to_not_be_null(label)"
    column: str | None  # None for table expectations
    severity: str  # "fail" or "warn", from params
    failed: bool  # GX success=False, or the expectation raised
    raised: str | None  # the exception message if it raised
    rows: list[int] | None  # failing row positions (column map expectations only)
    observed: Any  # GX's observed_value, for table-level expectations

    @property
    def row_level(self) -> bool:
        """A failure that names rows, so quarantining those rows can cure it."""
        return self.failed and self.raised is None and self.rows is not None


def _spec(name: str, **kwargs: Any) -> ExpectationSpec:
    # model_construct: the defaults are known-good, so GX need not re-check them at params load.
    return ExpectationSpec.model_construct(expectation=name, kwargs=kwargs, severity="fail")


def _unique(columns: list[str]) -> list[str]:
    return list(dict.fromkeys(columns))


def _task_specs(
    labels: LabelParams, params: ValidateParams, task: TaskColumns
) -> list[ExpectationSpec]:
    """The row-level checks of the task type's own columns (derived in validate_derive.py)."""
    specs = []
    if task.has_labels:
        specs.append(_in_set("label_normalised", list(labels.classes)))
    if task.has_images:
        specs += [
            _in_set("image_readable", [True]),
            *(_image_side(s, params) for s in ("width", "height")),
        ]
    if task.has_text:  # at least one character once normalised as clean will (clean.text)
        specs.append(
            _spec("expect_column_values_to_be_between", column=task.text_chars, min_value=1)
        )
    if task.is_series:
        specs += [_in_set(task.time_is_date, [True]), _in_set(task.value_is_number, [True])]
    return specs


def _image_side(side: str, params: ValidateParams) -> ExpectationSpec:
    """`validate.image_<side>` exactly when given, else between min_ and max_image_side."""
    column = f"image_{side}"
    exact = getattr(params, column, None)
    if exact is not None:
        return _in_set(column, [exact])
    low, high = getattr(params, "min_image_side", 1), getattr(params, "max_image_side", None)
    return _spec("expect_column_values_to_be_between", column=column, min_value=low, max_value=high)


def _in_set(column: str, values: list) -> ExpectationSpec:
    return _spec("expect_column_values_to_be_in_set", column=column, value_set=values)


def default_specs(
    labels: LabelParams, params: ValidateParams, task: TaskColumns = IMAGES
) -> list[ExpectationSpec]:
    """The checks a crawl of `task`'s type always gets: the columns of `validate` and the task
    type's own (image classification: exactly the checks it had before there were task types)."""
    required = _unique([*params.required_columns, *task.required()])
    non_null = _unique([*params.non_null_columns, *task.non_null()])
    # The crawl writes every field as a string or null, save float fields such as a series'
    # value (checked as a number instead); anything else is a flipped dtype.
    strings = [c for c in required if c not in task.not_strings()]
    return [
        *(_spec("expect_column_to_exist", column=c) for c in required),
        *(_spec("expect_column_values_to_be_of_type", column=c, type_="str") for c in strings),
        *(_spec("expect_column_values_to_not_be_null", column=c) for c in non_null),
        _spec("expect_column_values_to_be_unique", column="url"),  # the key of the accounting
        *_task_specs(labels, params, task),
        _spec("expect_table_row_count_to_be_between", min_value=params.min_rows),
    ]


def suite_specs(
    labels: LabelParams, params: ValidateParams, task: TaskColumns = IMAGES
) -> list[ExpectationSpec]:
    """The defaults, then the expectations declared in params (validate.expectations)."""
    return [*default_specs(labels, params, task), *params.expectations]


def _raised(info: Any) -> str | None:
    """GX reports an exception either flat ({raised_exception, exception_message}) or, when a
    metric failed to compute (e.g. a missing column), as one such dict per metric id."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info else list(info.values())
    messages = [
        str(e.get("exception_message") or "exception")
        for e in entries
        if isinstance(e, dict) and e.get("raised_exception")
    ]
    return "; ".join(dict.fromkeys(messages)) or None


class RawItemsSuite:
    """The suite built from params in a fresh in-memory GX context (about 30 ms to set up)."""

    def __init__(
        self, labels: LabelParams, params: ValidateParams, task: TaskColumns = IMAGES
    ) -> None:
        self.context = gx.get_context(mode="ephemeral")
        # GX draws a tqdm bar per run by default; the stage logs its own milestones.
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch = (
            self.context.data_sources.add_pandas("raw")
            .add_dataframe_asset("items")
            .add_batch_definition_whole_dataframe("whole_crawl")
        )
        specs = suite_specs(labels, params, task)
        wanted = [build(s.expectation, s.kwargs) for s in specs]
        notes = (
            "Rows failing a column expectation are quarantined and the suite re-runs on the "
            f"rest; the stage fails if more than {params.max_quarantine_share:.2%} of the rows "
            "are quarantined."
        )
        suite = gx.ExpectationSuite(name="raw_items", expectations=wanted, notes=notes)
        if len(suite.expectations) != len(wanted):  # GX logs and drops invalid ones
            raise RuntimeError("Great Expectations dropped an expectation from the suite")
        suite = self.context.suites.add(suite)
        self._order = {e.id: i for i, e in enumerate(suite.expectations)}
        self._severity = {e.id: s.severity for e, s in zip(suite.expectations, specs, strict=True)}
        definition = gx.ValidationDefinition(name="raw_items", data=batch, suite=suite)
        self._definition = self.context.validation_definitions.add(definition)

    def run(self, frame: pd.DataFrame, run_name: str) -> list[Check]:
        """Validate `frame` (object columns, RangeIndex); checks in suite order."""
        run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC))
        result = self._definition.run(
            batch_parameters={"dataframe": frame}, result_format=_RESULT_FORMAT, run_id=run_id
        )
        checks = []
        for r in sorted(result.results, key=lambda r: self._order[r.expectation_config.id]):
            config, details = r.expectation_config, r.result or {}
            column = config.kwargs.get("column")
            name = f"{config.type}({column})" if column else config.type
            rows = details.get("unexpected_index_list")
            if rows is not None and len(rows) != details.get("unexpected_count"):
                raise RuntimeError(f"{name}: GX listed fewer failing rows than it counted")
            raised = _raised(r.exception_info)
            failed = not r.success or raised is not None  # a raise is never a pass
            severity = self._severity[config.id]
            observed = details.get("observed_value")
            checks.append(Check(name, column, severity, failed, raised, rows, observed))
        return checks

    def write_docs(self, directory: Path) -> Path:
        """Render Data Docs of every run so far into `directory`; returns its index.html."""
        site = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(Path(directory).resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
        if _SITE in (self.context.config.data_docs_sites or {}):
            self.context.update_data_docs_site(_SITE, site)
        else:
            self.context.add_data_docs_site(_SITE, site)
        self.context.build_data_docs(site_names=[_SITE])
        localize(Path(directory))  # offline: the CDN scripts and styles from local copies
        return Path(directory) / "index.html"
