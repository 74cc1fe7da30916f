"""Drift between data versions (tasks/core/drift.py): `pytest tests/unit/core/test_drift.py`.

Profiles come from the validate stage's own derived columns on a synthetic crawl of real digits
(tests/raw_fixture.py); the previous version is read from a DVC-shaped lock and cache (the real
`dvc repro` round trip is tests/integration/test_drift.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tasks.core.drift import compare, drift_report, previous_profile, profile_of, psi
from tasks.core.params import DriftParams, load_params
from tasks.core.validate_derive import _with_derived
from tests.raw_fixture import build_raw

LABELS = load_params(Path(__file__).resolve().parents[3] / "params.yaml").labels
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
    assert checks["new_item_share"]["statistic"] == 1.0
    assert not checks["image_mean_ks"]["drifted"]  # same kind of images


def _record(project: Path, profile: pd.DataFrame, cache_root: str = ".dvc/cache") -> None:
    """Lay `profile` out as DVC 3 records data/validated: dvc.lock -> .dir manifest -> file."""
    cache = project / cache_root / "files/md5"
    (cache / "ab").mkdir(parents=True)
    profile.to_parquet(cache / "ab" / "cdef")
    (cache / "12").mkdir()
    (cache / "12" / "3456.dir").write_text(
        json.dumps([{"md5": "abcdef", "relpath": "profile.parquet"}])
    )
    lock = {"stages": {"validate": {"outs": [{"path": "data/validated", "md5": "123456.dir"}]}}}
    (project / "dvc.lock").write_text(yaml.safe_dump(lock))


def test_previous_version_comes_from_dvc_lock_and_cache(tmp_path: Path, base: pd.DataFrame) -> None:
    assert previous_profile(tmp_path) == (None, "no previous version (no dvc.lock)")
    first = drift_report(tmp_path, base, DRIFT)
    assert first == {
        "status": "no previous version",
        "previous": "no previous version (no dvc.lock)",
        "n_new": 300,
    }
    _record(tmp_path, base)
    previous, source = previous_profile(tmp_path)
    pd.testing.assert_frame_equal(previous, base)
    assert source == "data/validated 123456.dir (dvc.lock)"
    assert drift_report(tmp_path, base, DRIFT)["status"] == "ok"
    smaller = base.iloc[:100]
    report = drift_report(tmp_path, smaller, DRIFT)
    assert report["status"] == "warn"  # row_count_change is warn by default
    assert report["checks"]["row_count_change"]["drifted"]
    strict = DRIFT.model_copy(
        update={"row_count_change": DRIFT.row_count_change.model_copy(update={"severity": "fail"})}
    )
    assert drift_report(tmp_path, smaller, strict)["status"] == "fail"


def test_a_configured_cache_dir_is_followed(tmp_path: Path, base: pd.DataFrame) -> None:
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc/config").write_text("[cache]\n    dir = ../shared-cache\n")
    _record(tmp_path, base, cache_root="shared-cache")
    previous, _ = previous_profile(tmp_path)
    pd.testing.assert_frame_equal(previous, base)
    (tmp_path / ".dvc/config").write_text("[cache]\n    dir = ../elsewhere\n")
    assert previous_profile(tmp_path)[0] is None  # recorded, but not in that cache: says so
    assert "not in the local DVC cache" in previous_profile(tmp_path)[1]
