"""What every task type's stages share about data/clean: the error that names a bad input, and
the check that labels agree with the classes of params or of a model card."""

from __future__ import annotations

import numpy as np
import pandas as pd


class DataError(ValueError):
    """data/clean is missing, malformed or disagrees with the classes; the message names it."""


def check_labels(items: pd.DataFrame, classes: list[str] | tuple[str, ...], source: str) -> None:
    """Each row's `label` must equal classes[label_index]; `source` says where classes came from."""
    index = items["label_index"].to_numpy(np.int64)
    ok = (index >= 0) & (index < len(classes))
    names = np.asarray(classes, dtype=object)
    ok[ok] = names[index[ok]] == items["label"].to_numpy(object)[ok]
    if not ok.all():
        bad = items.loc[~ok, ["label", "label_index"]].drop_duplicates().head(5)
        raise DataError(
            f"data/clean labels disagree with {source} {list(classes)}: "
            f"e.g. {bad.to_dict('records')} ({int((~ok).sum())} rows)"
        )
