"""The model registry: `kiln models list`, `kiln models rollback VERSION` (flows/cli.py).

Layout (outside every DVC output, so neither `dvc repro`, `dvc checkout` nor a failed stage ever
replaces the champion; the promote stage is the only writer besides the two commands):

    registry/registry.json           champion version, one entry per version, the decision history
    registry/versions/v0001/...      immutable copies: model.safetensors, card.json, model.onnx,
                                     onnx.json; each file's sha256 is in the version's entry
    registry/champion -> versions/vNNNN   a convenience symlink, swapped atomically
    registry/.gitignore              "*": model binaries never enter git (DVC versions models/)

`registry.json` is the commit point: a version directory is complete before its entry appears,
and the file itself is replaced atomically (tasks.core.io), so a crash leaves the old champion or
the
new one. Readers (the server) trust only files whose sha256 matches their entry. Writers hold an
flock on `registry/.lock`. Standard library only: `serve/` imports this without torch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.core.io import atomic_dir, write_json, write_text

REGISTRY_DIR = Path("registry")
REGISTRY_FILE = "registry.json"
FORMAT = 1
VERSION_RE = re.compile(r"^v[0-9]{4,9}$")  # v0001 ...; never a path


class RegistryError(ValueError):
    """The registry or a version in it is missing, unknown or fails its hash check."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_registry(root: Path | str = REGISTRY_DIR) -> dict[str, Any]:
    """The registry's content; an empty registry when the directory or file does not exist."""
    path = Path(root) / REGISTRY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"format": FORMAT, "champion": None, "versions": {}, "history": []}
    except (OSError, json.JSONDecodeError) as exc:
        raise RegistryError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RegistryError(f"{path} is not a format-{FORMAT} Kiln registry")
    return data


def champion(root: Path | str = REGISTRY_DIR) -> tuple[str, dict[str, Any]] | None:
    """(version, entry) of the current champion, or None before the first promotion."""
    data = read_registry(root)
    version, versions = data.get("champion"), data.get("versions")
    if version is None:
        return None
    if not isinstance(versions, dict) or version not in versions:
        known = sorted(versions) if isinstance(versions, dict) else []
        raise RegistryError(
            f"{Path(root) / REGISTRY_FILE} names champion {version!r}, which is not one of its "
            f"versions {known}"
        )
    return version, versions[version]


def task_of(entry: dict[str, Any]) -> str:
    """The task type an entry was trained for. Entries written before task types existed have no
    "task": they are image classifiers."""
    return entry.get("task", "image_classification")


def entry(root: Path | str, version: str) -> dict[str, Any]:
    if not VERSION_RE.match(version):
        raise RegistryError(f"{version!r} is not a version name (v0001, v0002, ...)")
    versions = read_registry(root)["versions"]
    if version not in versions:
        raise RegistryError(f"no version {version} in {root}; known: {sorted(versions)}")
    return versions[version]


def verified_bytes(root: Path | str, version: str, name: str) -> bytes:
    """A version's file, read once and checked against the sha256 recorded for it."""
    files = entry(root, version)["files"]
    if name not in files:
        raise RegistryError(f"version {version} has no file {name!r}; it has {sorted(files)}")
    path = Path(root) / "versions" / version / name
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"cannot read {path}: {exc}") from None
    actual = hashlib.sha256(blob).hexdigest()
    if actual != files[name]:
        raise RegistryError(
            f"{path} has sha256 {actual[:16]}… but the registry records {files[name][:16]}…: "
            "tampered or truncated, refusing to load it"
        )
    return blob


@contextmanager
def locked(root: Path | str = REGISTRY_DIR) -> Iterator[dict[str, Any]]:
    """Hold the registry's write lock; yields its current content (re-read under the lock)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".gitignore").exists():
        write_text(root / ".gitignore", "# model binaries: DVC versions models/, not git\n*\n")
    with open(root / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes, also on a crash
        yield read_registry(root)


def _commit(root: Path, data: dict[str, Any]) -> None:
    """Write registry.json (the commit point), then point the champion symlink at it."""
    write_json(root / REGISTRY_FILE, data)
    link = root / "champion"
    if data["champion"] is None:
        return
    tmp = root / f".champion.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path("versions") / data["champion"])
    os.replace(tmp, link)  # rename(2) over the old link: readers see the old or the new one


def _event(action: str, version: str, before: str | None, reason: str, forced: bool) -> dict:
    return {
        "at": now_iso(),
        "action": action,
        "version": version,
        "previous": before,
        "reason": reason,
        "forced": forced,
    }


def add_version(
    root: Path | str,
    files: dict[str, Path],
    info: dict[str, Any],
    *,
    reason: str,
    forced: bool = False,
    action: str = "promote",
) -> str:
    """Copy `files` into a new version, record `info` + hashes, make it the champion."""
    root = Path(root)
    with locked(root) as data:
        numbers = [int(v[1:]) for v in data["versions"]]
        existing = root / "versions"
        if existing.is_dir():  # a crash may have left a directory without an entry: skip it
            numbers += [int(p.name[1:]) for p in existing.iterdir() if VERSION_RE.match(p.name)]
        version = f"v{max(numbers, default=0) + 1:04d}"
        with atomic_dir(existing / version) as tmp:
            for name, src in files.items():
                shutil.copyfile(src, tmp / name)
            hashes = {name: sha256_file(tmp / name) for name in files}
        before = data["champion"]
        data["versions"][version] = {
            **info,
            "version": version,
            "created_at": now_iso(),
            "files": hashes,
            "reason": reason,
            "forced": forced,
        }
        data["champion"] = version
        data["history"].append(_event(action, version, before, reason, forced))
        _commit(root, data)
    return version


def set_champion(root: Path | str, version: str, *, action: str, reason: str) -> str | None:
    """Make an existing version the champion again (after checking its files); returns the old."""
    root = Path(root)
    with locked(root) as data:
        for name in entry(root, version)["files"]:
            verified_bytes(root, version, name)  # never roll back to a damaged version
        before = data["champion"]
        data["champion"] = version
        data["history"].append(_event(action, version, before, reason, action != "promote"))
        _commit(root, data)
    return before


def rollback(root: Path | str, version: str, reason: str = "") -> str | None:
    return set_champion(root, version, action="rollback", reason=reason or "kiln models rollback")


def list_rows(root: Path | str = REGISTRY_DIR) -> list[dict[str, Any]]:
    """One row per version, oldest first, for `kiln models list`."""
    data = read_registry(root)
    rows = []
    for version, item in sorted(data["versions"].items()):
        metrics = item.get("metrics") or {}
        rows.append(
            {
                "version": version,
                "champion": version == data["champion"],
                "created_at": item.get("created_at", ""),
                "git_rev": (item.get("git_rev") or "-")[:10]
                + ("+dirty" if item.get("git_dirty") else ""),
                "data_version": (item.get("data_version") or "-")[:12],
                "accuracy": metrics.get("accuracy"),
                "macro_f1": metrics.get("macro_f1"),
                "forced": item.get("forced", False),
                "reason": item.get("reason", ""),
            }
        )
    return rows
