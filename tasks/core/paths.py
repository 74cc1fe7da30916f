"""Where each stage reads and writes, relative to the project root: the deps and outs that
dvc.yaml declares, named once for every stage and task type."""

from __future__ import annotations

from pathlib import Path

RAW_DIR = Path("data/raw")  # crawl: items.jsonl + images/ (files named by their sha256)
RAW_IMAGES = RAW_DIR / "images"
VALIDATED_DIR = Path("data/validated")  # validate: items.parquet of the valid rows
VALIDATED_ITEMS = VALIDATED_DIR / "items.parquet"
CLEAN_DIR = Path("data/clean")  # clean: items.parquet (+ pixels.npy for images)
CLEAN_ITEMS = CLEAN_DIR / "items.parquet"
QUARANTINE_DIR = Path("data/quarantine")  # <stage>.jsonl: every rejected row with its reason
VALIDATE_QUARANTINE = QUARANTINE_DIR / "validate.jsonl"
CLEAN_QUARANTINE = QUARANTINE_DIR / "clean.jsonl"
MODELS_DIR = Path("models")  # train: weights + card
EXPORT_DIR = Path("export")  # export: model.onnx + its card
REPORTS_DIR = Path("reports")
CRAWL_REPORT = REPORTS_DIR / "crawl.json"
# crawl: the report of a partial crawl that crawl.allow_partial kept out of data/raw
CRAWL_PARTIAL_REPORT = REPORTS_DIR / "crawl_partial.json"
VALIDATE_REPORT = REPORTS_DIR / "validate.json"
VALIDATION_DIR = REPORTS_DIR / "validation"  # GX results and Data Docs
DRIFT_REPORT = REPORTS_DIR / "drift.json"
CLEAN_REPORT = REPORTS_DIR / "clean.json"
LABEL_ISSUES = REPORTS_DIR / "label_issues.csv"
TRAIN_REPORTS = REPORTS_DIR / "train"  # DVCLive's metrics and plots
METRICS = REPORTS_DIR / "metrics.json"  # evaluate: the test metrics promote compares
EVALUATION_DIR = REPORTS_DIR / "evaluation"  # evaluate: the task type's reports of the test split
# ... and in it the charts `dvc plots show` draws (dvc.yaml's `plots:` declares the folder, not
# its files, which differ by task type): PNGs as images, CSVs as a confusion matrix (columns
# actual,predicted). Every task type's evaluate leaves the folder (tasks.core.stage makes it for
# a plugin that draws nothing).
EVALUATION_PLOTS = EVALUATION_DIR / "plots"
PROMOTION_REPORT = REPORTS_DIR / "promotion.json"
WORK_DIR = Path(".kiln")  # scratch beside data/: the spider's output, checkpoints
CHECKPOINTS_DIR = WORK_DIR / "checkpoints"
SWEEP_DIR = WORK_DIR / "sweep"  # `kiln sweep`: one Optuna study per sweep, <name>.db (SQLite)
SWEEP_REPORTS = REPORTS_DIR / "sweep"  # `kiln sweep`: trials side by side, curves, plots
