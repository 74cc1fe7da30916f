"""What a task type's rows hold (`TaskType.columns`): light enough for a plug-in's `__init__`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tasks.core.params import TextCleanParams

LABEL = "label"  # the crawled field holding the label, whatever the task type


@dataclass(frozen=True)
class TaskColumns:
    """What the rows of a task type hold, which decides the default expectations, derived columns
    and drift checks. Each task type says it (`TaskType.columns`); validate never asks which task
    type it has."""

    labels: bool = False  # a `label` column with one of labels.classes
    images: bool = False  # an `image_path` into data/raw/images
    text: TextCleanParams | None = None  # a text column, normalised as clean will
    time_column: str | None = None  # a series: one timestamp ...
    value_column: str | None = None  # ... and one numeric value per row

    @property
    def has_labels(self) -> bool:
        return self.labels

    @property
    def has_images(self) -> bool:
        return self.images

    @property
    def has_text(self) -> bool:
        return self.text is not None

    @property
    def is_series(self) -> bool:
        return self.time_column is not None and self.value_column is not None

    @property
    def text_chars(self) -> str:
        return f"{self.text.column}_chars" if self.text else "text_chars"

    @property
    def time_is_date(self) -> str:
        return f"{self.time_column}_is_date"

    @property
    def value_is_number(self) -> str:
        return f"{self.value_column}_is_number"

    def required(self) -> list[str]:
        """Crawled columns the task type needs on top of `validate.required_columns`. Images name
        theirs (label, image_path) in params, as they always did."""
        if self.has_text:
            return [self.text.column, *([LABEL] if self.has_labels else [])]
        if self.is_series:
            return [self.time_column, self.value_column]
        return []

    def non_null(self) -> list[str]:
        """Crawled columns that may not be null on top of `validate.non_null_columns`; a null
        series value is not one of them: clean fills it (clean.series.fill)."""
        if self.is_series:
            return [self.time_column]
        return self.required()

    def numeric(self, declared: Iterable[str]) -> list[str]:
        """`validate.numeric_columns`, plus the series' value column for forecasting."""
        columns = list(declared)
        if self.is_series and self.value_column not in columns:
            columns.append(self.value_column)
        return columns

    def shown_as(self) -> dict[str, str]:
        """Derived column -> the raw column a person should see when its check fails (the
        text, not its length; the date as crawled, not False)."""
        if self.has_text:
            return {self.text_chars: self.text.column}
        if self.is_series:
            return {
                self.time_is_date: self.time_column,
                self.value_is_number: self.value_column,
            }
        return {}

    def not_strings(self) -> set[str]:
        """Required columns the crawl writes as something other than a string (the value of a
        series is a float field)."""
        return {self.value_column} if self.is_series else set()
