"""Keep each successful refresh beyond this machine: a DVC remote and a git commit per refresh.

With `storage.remote` set in params.yaml, the flow ends every successful run with `publish`:

1. the remote becomes DVC's default remote `kiln` in `.dvc/config` (with `endpointurl` for an
   S3-compatible endpoint), so a clone's plain `dvc pull` finds it;
2. each registry version (`registry/versions/vNNNN`, hash-checked against registry.json first)
   gets a DVC file `storage/registry/vNNNN.dvc`; registry/ stays outside the pipeline's outputs
   (tasks/core/registry.py), these files only let DVC push and pull the immutable versions;
3. `dvc push`: every stage output recorded in dvc.lock and every registry version;
4. one git commit on `storage.branch` holding dvc.lock, params.yaml, .dvc/config,
   registry/registry.json, the version DVC files and the .gitignore files DVC wrote, on top of
   the code of the checked-out commit. Its message names the data version, the test metrics and
   the promotion decision, also as git trailers (`Kiln-Data-Version: ...`) that `kiln history`
   reads back. The commit is built with a separate index (git plumbing), so neither the checked-out
   branch, the index nor the working tree changes unless the checked-out branch is
   `storage.branch` itself, which then simply moves on.

The push comes before the commit: a commit names only data the remote holds. A push that fails
(remote down, no credentials) fails the run with the remote's error and writes
`.kiln/storage-pending.json`; nothing local is touched (dvc.lock, the DVC cache and the registry
keep everything), and the next run, even one whose stages are all up to date, pushes and
commits again. A tree equal to the branch's last commit is not committed again (no empty commit).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

import yaml

from tasks.core import registry
from tasks.core.io import write_json, write_text
from tasks.core.params import StorageParams

REMOTE_NAME = "kiln"
VERSION_DVC_DIR = Path("storage") / "registry"
PENDING = Path(".kiln") / "storage-pending.json"
METRIC_NAMES = ("accuracy", "macro_f1", "mae", "rmse", "mape", "mase", "perplexity")
TRAILERS = ("Kiln-Refreshed-At", "Kiln-Data-Version", "Kiln-Metrics", "Kiln-Promotion",
            "Kiln-Champion")
# Committed besides the registry's version files: what `git checkout` + `dvc pull` needs.
COMMITTED = ("dvc.lock", "params.yaml", ".dvc/config", "registry/registry.json")


class StorageError(RuntimeError):
    """The refresh could not be pushed or committed; its message says why and what is kept."""


@dataclass(frozen=True)
class Published:
    pushed: int  # files DVC transferred
    commit: str | None  # the new commit, None when nothing changed since the branch's last one
    branch: str


def _git(project: Path, *args: str, env: dict[str, str] | None = None,
         check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=project, text=True, capture_output=True,
                          env={**os.environ, **(env or {})}, check=False)
    if check and proc.returncode != 0:
        raise StorageError(f"git {' '.join(args[:2])} failed: {proc.stderr.strip()}")
    return proc.stdout.strip() if proc.returncode == 0 else ""


def remote_url(project: Path, cfg: StorageParams) -> str:
    """The remote as DVC's config holds it: a relative directory made absolute (the project's)."""
    url = cfg.remote or ""
    if "://" in url or Path(url).is_absolute():
        return url
    return str((project / url).resolve())


def configure_remote(project: Path, cfg: StorageParams) -> bool:
    """Make `cfg.remote` DVC's default remote `kiln`; True when .dvc/config changed."""
    from dvc.config import Config  # noqa: PLC0415 (DVC only when storage is used)

    wanted: dict[str, str] = {"url": remote_url(project, cfg)}
    if cfg.endpoint_url:
        wanted["endpointurl"] = cfg.endpoint_url
    config = Config(dvc_dir=str(project / ".dvc"), validate=False)
    current = config.load_one("repo")
    if current.get("remote", {}).get(REMOTE_NAME) == wanted and \
            current.get("core", {}).get("remote") == REMOTE_NAME:
        return False
    with config.edit("repo") as conf:
        conf["remote"][REMOTE_NAME] = wanted
        conf["core"]["remote"] = REMOTE_NAME
    return True


def track_registry_versions(project: Path) -> list[Path]:
    """A DVC file per registry version that has none yet, each version hash-checked first, so
    that a damaged version is never pushed; returns every version's DVC file."""
    from dvc.repo import Repo, lock_repo  # noqa: PLC0415

    root = project / registry.REGISTRY_DIR
    versions = sorted(registry.read_registry(root)["versions"])
    out_dir = project / VERSION_DVC_DIR
    new = [v for v in versions if not (out_dir / f"{v}.dvc").exists()]
    for version in new:
        for name in registry.entry(root, version)["files"]:
            registry.verified_bytes(root, version, name)
    if new:
        out_dir.mkdir(parents=True, exist_ok=True)
        with Repo(str(project)) as repo, lock_repo(repo):
            for version in new:
                dvcfile = out_dir / f"{version}.dvc"
                rel = os.path.relpath(root / "versions" / version, out_dir)
                write_text(dvcfile, yaml.safe_dump({"outs": [{"path": rel}]}))
                repo.commit(str(dvcfile), force=True)  # hashes it into the cache and the file
    return [out_dir / f"{v}.dvc" for v in versions]


def push(project: Path) -> int:
    """`dvc push` to the default remote; the number of files transferred."""
    from dvc.repo import Repo  # noqa: PLC0415

    with Repo(str(project)) as repo:
        return int(repo.push(remote=REMOTE_NAME) or 0)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def data_version(project: Path) -> str:
    """The data version the model was trained on (its card's, as the registry records it);
    else the md5 dvc.lock records for data/clean."""
    promotion = _read_json(project / "reports" / "promotion.json")
    found = (promotion.get("challenger") or {}).get("data_version")
    if found:
        return str(found)
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8")) or {}
    for out in ((lock.get("stages") or {}).get("clean") or {}).get("outs") or []:
        if out.get("path") == "data/clean":
            return str(out.get("md5", "unknown"))
    return "unknown"


def message(project: Path) -> str:
    """The refresh commit's message: a subject line and the trailers `kiln history` reads."""
    metrics = _read_json(project / "reports" / "metrics.json")
    shown = " ".join(f"{k}={metrics[k]:.4f}" for k in METRIC_NAMES
                     if isinstance(metrics.get(k), int | float))
    promotion = _read_json(project / "reports" / "promotion.json")
    outcome = promotion.get("outcome", "none")
    current = registry.champion(project / registry.REGISTRY_DIR)
    champ = current[0] if current else "none"
    version = data_version(project)
    reason = " ".join(str(promotion.get("reason", "no promote decision")).split())
    return (f"Kiln refresh: data {version[:12]}, {shown or 'no metrics'}; {outcome}, "
            f"champion {champ}\n\n{reason}\n\n"
            f"Kiln-Refreshed-At: {registry.now_iso()}\n"
            f"Kiln-Data-Version: {version}\n"
            f"Kiln-Metrics: {shown or '-'}\n"
            f"Kiln-Promotion: {outcome}\n"
            f"Kiln-Champion: {champ}\n")


def _identity_env(project: Path) -> dict[str, str]:
    """Git's own identity when it has one; else `Kiln <kiln@localhost>`, so that an unattended
    machine without git config still commits."""
    if _git(project, "var", "GIT_COMMITTER_IDENT", check=False):
        return {}
    return {"GIT_AUTHOR_NAME": "Kiln", "GIT_AUTHOR_EMAIL": "kiln@localhost",
            "GIT_COMMITTER_NAME": "Kiln", "GIT_COMMITTER_EMAIL": "kiln@localhost"}


def _files_to_commit(project: Path, version_files: list[Path]) -> list[str]:
    files = [f for f in COMMITTED if (project / f).exists()]
    files += [str(p.relative_to(project)) for p in version_files]
    # the .gitignore files DVC writes beside stage outputs (data/.gitignore, ...)
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8")) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            ignore = Path(out["path"]).parent / ".gitignore"
            if (project / ignore).is_file() and str(ignore) not in files:
                files.append(str(ignore))
    return files


def _is_ancestor(project: Path, commit: str, of: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", commit, of], cwd=project,
                          capture_output=True, check=False).returncode == 0


def commit_refresh(project: Path, cfg: StorageParams, version_files: list[Path]) -> str | None:
    """Commit this refresh on `cfg.branch` (module docstring); None when the branch's last commit
    already holds exactly this tree."""
    if not _git(project, "rev-parse", "--is-inside-work-tree", check=False):
        raise StorageError(f"{project} is not in a git repository: storage.remote needs one to "
                           "commit each refresh")
    ref = f"refs/heads/{cfg.branch}"
    head = _git(project, "rev-parse", "--verify", "-q", "HEAD", check=False)
    tip = _git(project, "rev-parse", "--verify", "-q", ref, check=False)
    files = _files_to_commit(project, version_files)
    with tempfile.TemporaryDirectory(prefix="kiln-index-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        if head:
            _git(project, "read-tree", head, env=index)
        _git(project, "add", "-f", "--", *files, env=index)
        tree = _git(project, "write-tree", env=index)
    if tip and _git(project, "rev-parse", f"{tip}^{{tree}}") == tree:
        return None
    parents = [tip] if tip else []
    if head and head not in parents and (not tip or not _is_ancestor(project, head, tip)):
        parents.append(head)  # the code that ran: history shows where it came from
    args = ["commit-tree", tree, *(a for p in parents for a in ("-p", p))]
    proc = subprocess.run(["git", *args], cwd=project, input=message(project), text=True,
                          capture_output=True, env={**os.environ, **_identity_env(project)},
                          check=False)
    if proc.returncode != 0:
        raise StorageError(f"git commit-tree failed: {proc.stderr.strip()}")
    commit = proc.stdout.strip()
    _git(project, "update-ref", "-m", "kiln refresh", ref, commit, tip or "")
    if _git(project, "symbolic-ref", "-q", "HEAD", check=False) == ref:
        # the checked-out branch moved: its index entries of these files follow it
        _git(project, "reset", "-q", commit, "--", *files)
    return commit


def publish(project: Path, cfg: StorageParams, logger: Logger | LoggerAdapter) -> Published:
    """Push this refresh to the remote and commit it (module docstring). Raises StorageError,
    after recording it in .kiln/storage-pending.json, when either fails."""
    url = remote_url(project, cfg)
    try:
        if configure_remote(project, cfg):
            logger.info("storage: DVC remote %r is now %s (.dvc/config)", REMOTE_NAME, url)
        version_files = track_registry_versions(project)
        pushed = push(project)
        logger.info("storage: pushed %d files to %s", pushed, url)
        commit = commit_refresh(project, cfg, version_files)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, StorageError) else str(exc)
        write_json(project / PENDING, {"at": registry.now_iso(), "remote": url,
                                       "branch": cfg.branch, "error": reason})
        raise StorageError(
            f"storage: this refresh is NOT stored on {url} / branch {cfg.branch}: {reason}. "
            "Nothing local is lost (dvc.lock, the DVC cache and registry/ hold it); the next "
            "`kiln run` pushes and commits it") from exc
    (project / PENDING).unlink(missing_ok=True)
    if commit is None:
        logger.info("storage: nothing new to commit; branch %s already holds this refresh",
                    cfg.branch)
    else:
        logger.info("storage: committed %s on branch %s", commit[:10], cfg.branch)
    return Published(pushed, commit, cfg.branch)


def history(project: Path, branch: str) -> list[dict[str, str]]:
    """The refreshes committed on `branch`, newest first: commit, time, data version, metrics,
    promotion outcome, champion. [] when the branch does not exist."""
    ref = f"refs/heads/{branch}"
    if not _git(project, "rev-parse", "--verify", "-q", ref, check=False):
        return []
    out = _git(project, "log", "--format=%H%x1f%(trailers:only,unfold)%x1e", ref)
    rows = []
    for record in out.split("\x1e"):
        if "\x1f" not in record:
            continue
        commit, trailers = record.strip("\n").split("\x1f", 1)
        found = dict(line.split(": ", 1) for line in trailers.splitlines() if ": " in line)
        if "Kiln-Data-Version" not in found:
            continue  # a code commit the branch grew from
        rows.append({"commit": commit, **{k.removeprefix("Kiln-").lower().replace("-", "_"):
                                          found.get(k, "") for k in TRAILERS}})
    return rows


def pending(project: Path) -> dict[str, Any] | None:
    """The last refresh that failed to be stored, if the next run has not stored it yet."""
    return _read_json(project / PENDING) or None
