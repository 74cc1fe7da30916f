"""The PNG images a stage wrote (the confusion matrix, the forecast plot, ...) as Prefect image
artifacts of its task run.

A Prefect image artifact is a URL the browser loads; Kiln runs no web server of its own beside
Prefect's, so the URL is a `data:` URI holding the image. The task run's Artifacts tab lists it
and the artifact's page draws it (tests/e2e/test_refresh_and_retrain.py checks both in headless
Chromium, the image decoded). Which files: the PNGs among the stage's `outs` in dvc.yaml, a
directory's directly inside it or in its plots/ folder (where evaluate puts its charts for `dvc
plots`, tasks/core/paths.py EVALUATION_PLOTS); each artifact is keyed `<stage>-<file name>`, so
the Artifacts page keeps one history per image across runs.
"""

from __future__ import annotations

import base64
import re
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

from prefect.artifacts import create_image_artifact

# The whole image goes into the Prefect database with the artifact: a cap keeps one plot from
# growing it by more than this (Kiln's plots are 40-120 KB at 100 dpi).
MAX_IMAGE_BYTES = 2 << 20


def stage_images(spec: dict[str, Any], project: Path) -> list[Path]:
    """The PNGs among the stage's outputs (a directory's, directly in it or in its plots/), in
    dvc.yaml's order and by name within a directory."""
    found = []
    for out in spec.get("outs", []):
        path = project / (out if isinstance(out, str) else next(iter(out)))
        if path.is_dir():
            found += sorted(path.glob("*.png")) + sorted(path.glob("plots/*.png"))
        elif path.suffix == ".png" and path.is_file():
            found.append(path)
    return found


def publish_images(stage: str, spec: dict[str, Any], project: Path,
                   logger: Logger | LoggerAdapter) -> int:
    """One image artifact per PNG the stage wrote, on the current task run; returns how many."""
    published = 0
    for path in stage_images(spec, project):
        data = path.read_bytes()
        name = path.relative_to(project).as_posix()
        if len(data) > MAX_IMAGE_BYTES:
            logger.warning("%s: %d bytes, over %d: not shown in the Prefect UI", name, len(data),
                           MAX_IMAGE_BYTES)
            continue
        create_image_artifact(
            image_url="data:image/png;base64," + base64.b64encode(data).decode("ascii"),
            key=f"{stage}-{re.sub(r'[^a-z0-9]+', '-', path.stem.lower()).strip('-')}",
            description=f"`{name}`, written by the {stage} stage",
        )
        published += 1
    return published
