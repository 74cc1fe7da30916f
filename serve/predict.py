"""Predictions from the command line: `kiln predict FILE...` (for task types that take a raw file,
such as a PNG for image classification).

The same path as `POST /predict/image`: the champion loaded from the registry with hash checks,
each file decoded and predicted by the task type's serving spec (`TaskSpec.predict_png`). Every
file is read before any is predicted, and a file that cannot be used is named in the error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from serve.backends import load_champion
from serve.inputs import InputError
from serve.schemas import task_spec


def predict_files(paths: list[Path], root: Path, backend: str = "onnx") -> list[dict[str, Any]]:
    """One row per file: file, label, probability, version; raises InputError naming a file."""
    loaded = load_champion(root, backend)
    spec = task_spec(loaded.task)
    if spec.predict_png is None:
        raise InputError(
            ("champion",),
            f"`kiln predict` reads files for task types that take one; champion "
            f"{loaded.version} is a {loaded.task} model: send its inputs to POST /predict of "
            "`kiln serve`",
        )
    raws = []
    for path in paths:
        try:
            raws.append(path.read_bytes())
        except OSError as exc:
            raise InputError((str(path),), f"cannot read: {exc.strerror}") from None
    rows: list[dict[str, Any]] = []
    for path, raw in zip(paths, raws, strict=True):
        try:
            result = spec.predict_png(raw, loaded)
        except InputError as exc:
            raise InputError((str(path),), exc.msg) from None
        best = result.predictions[0]
        rows.append(
            {
                "file": str(path),
                "label": best.label,
                "probability": round(best.probability, 6),
                "version": loaded.version,
            }
        )
    return rows


def best_guesses(inputs: list[bytes | str], root: Path, backend: str = "onnx"
                 ) -> tuple[str, list[tuple[str, float]]]:
    """The champion's version and, per input (PNG bytes, or a text for a text classifier), its
    most probable label and that label's probability: how sure the model is of it."""
    loaded = load_champion(root, backend)
    spec = task_spec(loaded.task)
    guesses = []
    for value in inputs:
        if isinstance(value, bytes):
            if spec.predict_png is None:
                raise InputError(("champion",), f"a {loaded.task} model does not read images")
            result = spec.predict_png(value, loaded)
        else:
            try:
                request = spec.request(1).model_validate({"instances": [{"text": value}]})
            except ValidationError as exc:  # e.g. a text longer than the server takes
                raise InputError(("text",), f"{value[:40]!r}...: {exc}") from None
            result = spec.predict(request, loaded)
        best = result.predictions[0]
        guesses.append((best.label, float(best.probability)))
    return loaded.version, guesses
