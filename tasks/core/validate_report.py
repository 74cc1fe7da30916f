"""The summary of one `python -m tasks.validate` run: `reports/validation/summary.json`.

What the flow's markdown artifact (flows/summary.py) shows: every expectation with its severity,
whether it passed, on how many rows it failed and a few example rows (url and the offending value;
for a derived check such as `week_is_date`, the raw value it was derived from),
the stage's failures and warnings, and where the GX Data Docs are.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.validate import ValidationOutcome

N_EXAMPLES = 3  # rows shown per failed expectation; the quarantine file has them all


def _json_value(value: Any) -> Any:
    """A short JSON-ready rendering of a cell (None for NaN; long strings cut at 80 chars)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool | int | float):
        return value
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _examples(outcome: ValidationOutcome, column: str | None, rows: list[int]) -> list[dict]:
    frame = outcome.checked
    if frame is None:
        return []
    column = outcome.shown_as.get(column, column) if column else column
    out = []
    for i in rows[:N_EXAMPLES]:
        url = frame.at[i, "url"] if "url" in frame else None
        value = frame.at[i, column] if column and column in frame else None
        out.append({"url": _json_value(url), "value": _json_value(value)})
    return out


def validation_summary(outcome: ValidationOutcome, data_docs: Path) -> dict[str, Any]:
    expectations = []
    for check in outcome.checks:
        expectations.append(
            {
                "expectation": check.name,
                "severity": check.severity,
                "success": not check.failed,
                "raised": check.raised,
                "failed_rows": len(check.rows) if check.failed and check.rows is not None else 0,
                "observed": _json_value(check.observed),
                "examples": _examples(outcome, check.column, check.rows or [])
                if check.failed
                else [],
            }
        )
    return {
        **outcome.metrics,
        "data_docs": str(data_docs),
        "expectations": expectations,
    }
