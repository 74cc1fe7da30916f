"""Label normalisation shared by `python -m tasks.validate` and `python -m tasks.clean`.

Validate uses it to decide which labels are allowed, clean uses it to write the canonical class;
both call this one function so that they can never disagree on what a label means.
"""

from __future__ import annotations

from tasks.core.params import LabelParams


def label_lookup(labels: LabelParams) -> dict[str, str]:
    """Every accepted spelling (stripped, lower-cased) -> canonical class.

    A class's own spelling wins over an alias with the same text, so an alias can never rename a
    class into another one.
    """
    lookup = {alias.strip().lower(): target for alias, target in labels.aliases.items()}
    lookup.update({cls.strip().lower(): cls for cls in labels.classes})
    return lookup


def normalise_label(raw: str | None, labels: LabelParams) -> str | None:
    """The canonical class for a raw label, or None if it is missing or not a known class.

    `raw` is stripped and lower-cased, then matched against the classes and `labels.aliases`
    (whose keys are compared the same way): " Three " -> "3" with the alias three: "3".
    """
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise TypeError(f"label must be a string or None, got {type(raw).__name__} {raw!r}")
    return label_lookup(labels).get(raw.strip().lower())
