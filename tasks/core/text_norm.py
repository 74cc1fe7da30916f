"""Text normalisation shared by the text task types' clean stage and their serving.

`normalise_text` applies `clean.text` (Unicode NFKC, HTML remnants, whitespace, case) and is the
one place that decides what "the same text" means: the item key of a text item is the sha256 of
its normalised text (`text_key`), and near-duplicates share `dedupe_form` (case-folded, letters
and digits only). Needs only the standard library.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from typing import Any

_TAG = re.compile(r"<!--.*?-->|<[/!]?[A-Za-z][^<>]{0,1000}>", re.S)  # not "a < b" in prose
_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[\W_]+")


def normalise_text(text: str, cfg: Any) -> str:
    """`text` cleaned as `cfg` (a TextCleanParams) says; idempotent: f(f(x)) == f(x)."""
    if cfg.strip_html:
        # Entities decoded until stable ("&amp;lt;" -> "<"), then tags removed; repeat, since
        # removing a tag can join the halves of another ("<<b>i>" -> "<i>").
        while True:
            stripped = _TAG.sub(" ", html.unescape(text))
            if stripped == text:
                break
            text = stripped
    if cfg.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if cfg.collapse_whitespace:
        text = _SPACE.sub(" ", text).strip()
    if cfg.lowercase:
        text = text.lower()
    return text


def text_key(normalised: str) -> str:
    """An item's key: sha256 of its normalised text (labels/overrides.csv uses it)."""
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def dedupe_form(normalised: str) -> str:
    """What near-duplicates share: case-folded letters and digits, single-spaced."""
    return _NOT_WORD.sub(" ", normalised.casefold()).strip()
