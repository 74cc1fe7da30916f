"""Write the example sources of examples/*.params.yaml into a project, from packages installed with
Kiln (nothing is downloaded): `python examples/sources/make_data.py [PROJECT] [--per-class N]`.

* data/sources/jokes.csv: pyjokes' Czech, German and English jokes, columns `joke` and
  `language` (examples/table.params.yaml: text classification from a CSV file);
* data/sources/digits/<class>/<n>.png: scikit-learn's 8x8 handwritten digits, N per class
  (examples/folder.params.yaml: image classification from a labelled folder tree);
* data/sources/unlabelled/<n>.png: other digits without a class, for labelling from scratch
  (examples/unlabelled.params.yaml, `kiln label export`).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
import pyjokes
from PIL import Image
from sklearn.datasets import load_digits

LANGUAGES = ("cs", "de", "en")


def _png(pixels: np.ndarray) -> bytes:
    """An 8x8 grey PNG; the digits' 0..16 scaled to 0..255 as the demo site does."""
    buffer = io.BytesIO()
    Image.fromarray((pixels.astype(np.uint16) * 255 // 16).astype(np.uint8), mode="L").save(
        buffer, format="PNG")
    return buffer.getvalue()


def write_jokes(path: Path) -> int:
    rows = [(joke, lang) for lang in LANGUAGES
            for joke in pyjokes.get_jokes(language=lang, category="all")]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["joke", "language"])
        writer.writerows(rows)
    return len(rows)


def write_digits(root: Path, per_class: int, unlabelled: int) -> tuple[int, int]:
    """`per_class` digits of each class under root/digits/<class>/, then `unlabelled` more under
    root/unlabelled/ (different digits: the first ones of the dataset go to the classes)."""
    digits = load_digits()
    counts = dict.fromkeys(range(10), 0)
    labelled, rest = 0, []
    for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        if counts[int(target)] < per_class:
            counts[int(target)] += 1
            folder = root / "digits" / str(target)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:04d}.png").write_bytes(_png(pixels))
            labelled += 1
        else:
            rest.append(index)
    (root / "unlabelled").mkdir(parents=True, exist_ok=True)
    for index in rest[:unlabelled]:
        (root / "unlabelled" / f"{index:04d}.png").write_bytes(_png(digits.images[index]))
    return labelled, min(unlabelled, len(rest))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, nargs="?", default=Path("."))
    parser.add_argument("--per-class", type=int, default=30, help="labelled digits per class")
    parser.add_argument("--unlabelled", type=int, default=200, help="digits without a class")
    args = parser.parse_args(argv)
    root = args.project / "data" / "sources"
    n_jokes = write_jokes(root / "jokes.csv")
    n_digits, n_unlabelled = write_digits(root, args.per_class, args.unlabelled)
    print(f"{root}: jokes.csv ({n_jokes} jokes), digits/ ({n_digits} images), "
          f"unlabelled/ ({n_unlabelled} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
