"""Drift between data versions (tasks/core/drift.py): `pytest tests/unit/tasks/core/test_drift.py`.

Profiles come from the validate stage's own derived columns on a synthetic crawl of real digits
(tests/raw_fixture.py); the previous version is recorded by DVC itself (a one-stage dvc.yaml
committed into dvc.lock and the cache; the real `dvc repro` round trip is
tests/integration/test_drift.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dvc.repo import Repo, lock_repo
from PIL import Image

from tasks.core.columns import TaskColumns
from tasks.core.drift import (
    compare,
    drift_report,
    plot_drift,
    previous_profile,
    profile_of,
    psi,
)
from tasks.core.params import DriftParams, load_params
from tasks.core.validate_derive import _with_derived
from tests.project import REPO, record_validated
from tests.raw_fixture import build_raw

LABELS = load_params(REPO / "params.yaml").labels
DRIFT = DriftParams()


def _profile(root: Path, n_items: int = 300, **shift: int) -> pd.DataFrame:
    rows = build_raw(root, n_items, **shift)
    checked = _with_derived(pd.DataFrame(rows, dtype=object), root / "data/raw", LABELS, ["ink"])
    return profile_of(checked, ["ink"])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return _profile(tmp_path_factory.mktemp("base"))


def test_psi() -> None:
    same = pd.Series(list("aabbcc"))
    assert psi(same, same) == 0.0
    assert psi(same, pd.Series(list("aabbc"))) < 0.1
    assert psi(same, pd.Series(list("aaaaab"))) > 0.25  # "c" vanished, "a" dominates


def test_same_data_has_no_drift(base: pd.DataFrame) -> None:
    checks = compare(base, base, DRIFT)
    assert set(checks) == {
        "label_psi",
        "image_mean_ks",
        "numeric_ks:ink",
        "row_count_change",
        "row_drop",
        "new_item_share",
    }
    assert not any(c["drifted"] for c in checks.values())
    assert checks["label_psi"]["statistic"] == 0.0
    assert checks["new_item_share"]["n_new_items"] == 0


def test_shifted_crawl_drifts(tmp_path: Path, base: pd.DataFrame) -> None:
    darker = _profile(tmp_path / "darker", darken=2)
    checks = compare(base, darker, DRIFT)
    assert checks["image_mean_ks"]["drifted"] and checks["image_mean_ks"]["severity"] == "fail"
    assert checks["image_mean_ks"]["new_mean"] < checks["image_mean_ks"]["previous_mean"] / 1.8
    assert checks["new_item_share"]["statistic"] == 1.0  # new images: new content hashes
    assert not checks["label_psi"]["drifted"]  # same digits, same labels

    later = _profile(tmp_path / "later", n_items=120, start=300)  # other items, fewer of them
    checks = compare(base, later, DRIFT)
    assert checks["row_count_change"]["statistic"] == 0.6 and checks["row_count_change"]["drifted"]
    assert checks["row_drop"]["statistic"] == 0.6 and checks["row_drop"]["severity"] == "fail"
    assert compare(later, base, DRIFT)["row_drop"]["statistic"] == 0.0  # more rows: no drop
    assert checks["new_item_share"]["statistic"] == 1.0
    assert not checks["image_mean_ks"]["drifted"]  # same kind of images


def test_previous_version_comes_from_dvc_lock_and_cache(tmp_path: Path, base: pd.DataFrame) -> None:
    assert previous_profile(tmp_path) == (None, "no previous version (no dvc.lock)")
    first = drift_report(tmp_path, base, DRIFT)
    assert first == {
        "status": "no previous version",
        "previous": "no previous version (no dvc.lock)",
        "n_new": 300,
    }
    md5 = record_validated(tmp_path, base)
    assert md5.endswith(".dir")  # a directory output: its manifest names profile.parquet
    previous, source = previous_profile(tmp_path)
    pd.testing.assert_frame_equal(previous, base)
    assert source == f"data/validated {md5} (dvc.lock)"
    assert drift_report(tmp_path, base, DRIFT)["status"] == "ok"
    smaller = base.iloc[:100]
    report = drift_report(tmp_path, smaller, DRIFT)
    assert report["status"] == "fail"  # a drop of two thirds of the rows: row_drop fails
    assert report["checks"]["row_count_change"]["drifted"]
    assert report["checks"]["row_drop"]["drifted"]
    lenient = DRIFT.model_copy(
        update={"row_drop": DRIFT.row_drop.model_copy(update={"severity": "warn"})}
    )
    assert drift_report(tmp_path, smaller, lenient)["status"] == "warn"  # row_count_change: warn


def test_the_locked_version_is_read_not_the_workspace(tmp_path: Path, base: pd.DataFrame) -> None:
    """The running validate rewrites data/validated (atomically, as the stage does) while DVC's
    repository lock is held for the stage: drift reads what dvc.lock records, without the lock.
    (DVC's lock is a file lock: another Repo taking it, in this process too, fails after 3 s.)"""
    md5 = record_validated(tmp_path, base)
    rewritten = tmp_path / "data/validated/profile.parquet.tmp"
    base.iloc[:10].to_parquet(rewritten)
    rewritten.replace(tmp_path / "data/validated/profile.parquet")
    with Repo(str(tmp_path)) as repo, lock_repo(repo):  # as flows/dvc_stages.py holds it
        previous, source = previous_profile(tmp_path)
    pd.testing.assert_frame_equal(previous, base)
    assert source == f"data/validated {md5} (dvc.lock)"


def test_a_lock_without_data_validated_is_no_previous_version(
    tmp_path: Path, base: pd.DataFrame
) -> None:
    record_validated(tmp_path, base)
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {}}))
    assert previous_profile(tmp_path) == (
        None,
        "no previous version (dvc.lock records no data/validated)",
    )
    record_validated(tmp_path, base)
    (tmp_path / "data/validated/profile.parquet").unlink()  # a version recorded without one
    (tmp_path / "data/validated/items.parquet").write_bytes(b"items")
    with Repo(str(tmp_path)) as repo:
        repo.commit(f"{tmp_path / 'dvc.yaml'}:validate", force=True)
    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    md5 = lock["stages"]["validate"]["outs"][0]["md5"]
    assert previous_profile(tmp_path) == (
        None,
        f"no previous version (data/validated {md5} has no profile.parquet)",
    )


def test_a_configured_cache_dir_is_followed(
    tmp_path: Path, base: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    md5 = record_validated(tmp_path, base, cache_dir="../shared-cache")
    assert (tmp_path / "shared-cache/files/md5" / md5[:2] / md5[2:]).is_file()
    previous, _ = previous_profile(tmp_path)
    pd.testing.assert_frame_equal(previous, base)
    config = tmp_path / ".dvc/config"
    config.write_text(config.read_text().replace("../shared-cache", "../elsewhere"))
    with caplog.at_level(logging.WARNING, logger="kiln.validate"):
        previous, source = previous_profile(tmp_path)  # recorded, but not in that cache: says so
    assert previous is None
    assert source == f"no previous version (data/validated {md5} not in the local DVC cache)"
    assert f"dvc.lock records data/validated {md5} but the DVC cache at" in caplog.text
    assert str(tmp_path / "elsewhere") in caplog.text


def test_drift_chart_draws_each_check_with_a_statistic(tmp_path: Path) -> None:
    checks = compare(
        pd.DataFrame({"label": ["a"] * 50 + ["b"] * 50, "content_hash": list("x" * 100)}),
        pd.DataFrame({"label": ["a"] * 90 + ["b"] * 30, "content_hash": list("y" * 120)}),
        DRIFT,
        task=TaskColumns(labels=True),
    )
    report = {"status": "warn", "n_new": 120, "n_previous": 100, "checks": checks}
    assert plot_drift(report, tmp_path / "drift.png")
    with Image.open(tmp_path / "drift.png") as png:
        png.load()  # decodes the whole image
        # 9 in wide; 0.5 in per check (label_psi, row_count_change, row_drop, new_item_share)
        # + 1.6 in of title and axis, at 100 dpi
        assert png.format == "PNG" and png.size == (900, 360)


def test_no_drift_chart_without_a_previous_version(tmp_path: Path) -> None:
    assert not plot_drift({"status": "no previous version"}, tmp_path / "drift.png")
    assert not (tmp_path / "drift.png").exists()
