"""flows/storage.py without a pipeline: the storage params, the per-refresh commit on a real git
repository (built with a separate index: the checked-out branch, index and working tree stay as
they were), and `kiln history` reading it back. The whole flow with a real remote is
tests/e2e/test_storage.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from flows.storage import StorageError, commit_refresh, configure_remote, history, remote_url
from tasks.core.params import ParamsError, StorageParams, parse_params
from tests.project import GIT_IDENTITY, REPO, env


def _git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, env={**env(), **GIT_IDENTITY}, text=True,
                          capture_output=True, check=True).stdout.strip()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "project"
    (root / "reports").mkdir(parents=True)
    (root / "data").mkdir()
    _git(root.parent, "init", "-q", str(root))
    (root / "code.py").write_text("print('v1')\n")
    (root / "params.yaml").write_text("a: 1\n")
    _git(root, "add", "code.py", "params.yaml")
    _git(root, "commit", "-qm", "code")
    (root / "dvc.lock").write_text("schema: '2.0'\nstages:\n  clean:\n    outs:\n"
                                   "    - path: data/clean\n      md5: abc123.dir\n")
    (root / "data" / ".gitignore").write_text("/clean\n")
    (root / "reports" / "metrics.json").write_text(json.dumps({"accuracy": 0.91234}))
    (root / "reports" / "promotion.json").write_text(json.dumps(
        {"outcome": "kept", "reason": "challenger 0.90 < champion 0.91",
         "challenger": {"data_version": "d" * 32}}))
    return root


def test_storage_defaults_store_nothing_and_branch_names_are_checked() -> None:
    assert StorageParams().remote is None  # today's behaviour: nothing pushed, nothing committed
    assert StorageParams(remote="s3://b/p", endpoint_url="http://127.0.0.1:9").branch
    for bad in ("a..b", "-x", "a b", "x.lock", "a//b", ".hidden", "end."):
        with pytest.raises(ValueError, match="is not a git branch name"):
            StorageParams(branch=bad)
    with pytest.raises(ValueError, match="endpoint_url is for an s3:// remote"):
        StorageParams(remote="/srv/remote", endpoint_url="http://127.0.0.1:9")
    raw = {"project": {"name": "x", "task": "image_classification"}, "train": {},
           "validate": {}, "crawl": {"start_urls": ["http://127.0.0.1:1/"],
                                     "allowed_domains": ["127.0.0.1"], "allow_loopback": True,
                                     "item_url_pattern": "/i/", "fields": {"label": {"css": "a"}}},
           "storage": {"remot": "/srv"}}
    with pytest.raises(ParamsError, match="storage.remot"):
        parse_params(raw)


def test_relative_remote_is_the_projects_and_becomes_dvcs_default(project: Path) -> None:
    subprocess.run(["dvc", "init", "-q"], cwd=project, env=env(), check=True)
    cfg = StorageParams(remote="../remote")
    assert remote_url(project, cfg) == str(project.parent / "remote")
    assert configure_remote(project, cfg) is True
    assert configure_remote(project, cfg) is False  # unchanged: no rewrite
    text = (project / ".dvc" / "config").read_text()
    assert "remote = kiln" in text and str(project.parent / "remote") in text


def test_commit_per_refresh_on_a_side_branch_and_history(project: Path) -> None:
    head = _git(project, "rev-parse", "HEAD")
    cfg = StorageParams(remote="/unused", branch="kiln/refreshes")
    first = commit_refresh(project, cfg, [])
    assert first is not None
    # HEAD, its branch, the index and the working tree are untouched
    assert _git(project, "rev-parse", "HEAD") == head
    assert _git(project, "status", "--porcelain").splitlines() == [
        "?? data/", "?? dvc.lock", "?? reports/"]
    assert _git(project, "rev-parse", f"{first}^") == head
    files = _git(project, "ls-tree", "-r", "--name-only", first).splitlines()
    assert files == ["code.py", "data/.gitignore", "dvc.lock", "params.yaml"]
    subject = _git(project, "log", "-1", "--format=%s", first)
    assert subject == "Kiln refresh: data dddddddddddd, accuracy=0.9123; kept, champion none"
    assert commit_refresh(project, cfg, []) is None  # nothing new: no empty commit

    # the code moves on; the next refresh keeps the branch's history and names the new code
    (project / "code.py").write_text("print('v2')\n")
    _git(project, "commit", "-qam", "code v2")
    (project / "reports" / "promotion.json").write_text(json.dumps(
        {"outcome": "promoted", "reason": "better", "challenger": {"data_version": "e" * 32}}))
    second = commit_refresh(project, cfg, [])
    assert _git(project, "rev-list", "--parents", "-n1", second).split()[1:] == [
        first, _git(project, "rev-parse", "HEAD")]
    assert _git(project, "show", f"{second}:code.py") == "print('v2')"
    rows = history(project, "kiln/refreshes")
    assert [r["commit"] for r in rows] == [second, first]
    assert rows[0]["data_version"] == "e" * 32 and rows[0]["promotion"] == "promoted"
    assert rows[1]["metrics"] == "accuracy=0.9123" and rows[1]["champion"] == "none"
    assert rows[0]["refreshed_at"].endswith("Z")
    assert history(project, "no-such-branch") == []


def test_commit_on_the_checked_out_branch_moves_it_and_its_index(project: Path) -> None:
    _git(project, "checkout", "-qb", "prod")
    commit = commit_refresh(project, StorageParams(remote="/unused", branch="prod"), [])
    assert _git(project, "rev-parse", "HEAD") == commit
    assert _git(project, "status", "--porcelain", "--untracked-files=no") == ""


def test_not_a_git_repository_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text("stages: {}\n")
    with pytest.raises(StorageError, match="not in a git repository"):
        commit_refresh(tmp_path, StorageParams(remote="/unused"), [])


def test_params_yaml_of_the_repository_still_loads() -> None:
    from tasks.core.params import load_params  # noqa: PLC0415

    assert load_params(REPO / "params.yaml").storage.remote is None
