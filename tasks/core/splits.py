"""The stable train/val/test split of an item, shared by every task type that splits by item."""

from __future__ import annotations

import hashlib

from tasks.core.params import CleanParams

SPLITS = ("train", "val", "test")


def split_of(key: str, params: CleanParams) -> str:
    """The split of an item: depends only on its key and `clean.split_salt`, so an item keeps its
    split when others are added (models of different data versions meet the same test items)."""
    digest = hashlib.sha256((params.split_salt + key).encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if u < params.test_share:
        return "test"
    if u < params.test_share + params.val_share:
        return "val"
    return "train"
