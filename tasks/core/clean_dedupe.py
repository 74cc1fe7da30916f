"""Exact and near duplicates for `python -m tasks.clean`: keep one copy, record the others.

Exact: rows sharing a key (sha256 of the image bytes) are one item. Near: images with the same
average hash (imagehash's: 8x8 grey levels thresholded at their mean, a 64-bit perceptual hash
that survives re-encoding, small brightness changes and resizing) whose mean absolute pixel
difference is at most `clean.near_duplicates.max_mean_abs_diff`. In both, the first row in url
order is kept and the others are rejected with `duplicate_of`; copies that disagree on the label
are all rejected ("conflicting labels"): which one is right is a question for a person (`kiln
label export`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from tasks.core.params import NearDuplicateParams
from tasks.core.progress import QUIET_S, track

HASH_SIDE = 8  # the average hash is taken on an 8x8 thumbnail (64 bits)


def average_hash(pixels: np.ndarray) -> imagehash.ImageHash:
    """64-bit average hash of a grayscale image of any size (imagehash resizes it to 8x8)."""
    return imagehash.average_hash(Image.fromarray(pixels), hash_size=HASH_SIDE)


def keep_first_of_each(groups: list[list[dict]], reason: str, rejects: list[dict]) -> list[dict]:
    """Keep the first of each group (url order) unless the labels disagree; record the rest.

    Used for images here and for texts (tasks/core/text_clean.py)."""
    survivors = []
    for copies in groups:
        if len({c["label"] for c in copies}) > 1:
            why = (
                "conflicting labels" if reason == "duplicate" else f"conflicting labels ({reason})"
            )
            rejects.extend({"url": c["url"], "reason": why} for c in copies)
            continue
        first, *others = copies
        survivors.append(first)
        rejects.extend(
            {"url": c["url"], "reason": reason, "duplicate_of": first["url"]} for c in others
        )
    return survivors


def exact_duplicates(kept: list[dict], rejects: list[dict]) -> list[dict]:
    """One row per key (kept is in url order, so the first copy has the smallest url)."""
    by_key: dict[str, list[dict]] = defaultdict(list)
    for item in kept:
        by_key[item["key"]].append(item)
    return keep_first_of_each(list(by_key.values()), "duplicate", rejects)


def near_duplicates(
    kept: list[dict], rejects: list[dict], params: NearDuplicateParams
) -> list[dict]:
    """One row per cluster of near-identical images; clusters are grown from the first url.

    Only images with the same average hash are compared, pairwise within their block, one numpy
    operation per image against the rest of its block."""
    if not params.enabled:
        return kept
    # keyed by the hash's hex text: ImageHash's own __hash__ collides so often that 8,000 images
    # made 182,000 ImageHash.__eq__ calls (5.1 s of 11.7 s, profiled)
    by_hash: dict[str, list[dict]] = defaultdict(list)
    for item in track(kept, "clean.near_duplicates", unit="images", quiet_s=QUIET_S):
        by_hash[str(average_hash(item["pixels"]))].append(item)
    groups: list[list[dict]] = []
    for block in by_hash.values():
        pixels = np.stack([item["pixels"].reshape(-1) for item in block]).astype(np.int16)
        left = np.arange(len(block))
        while len(left):
            diff = np.abs(pixels[left[1:]] - pixels[left[0]]).mean(axis=1)
            near = diff <= params.max_mean_abs_diff
            groups.append([block[left[0]], *(block[i] for i in left[1:][near])])
            left = left[1:][~near]
    survivors = keep_first_of_each(groups, "near duplicate", rejects)
    order = {id(item): i for i, item in enumerate(kept)}
    return sorted(survivors, key=lambda item: order[id(item)])


def count(rejects: list[dict[str, Any]], reason: str) -> int:
    return sum(r["reason"] == reason for r in rejects)
