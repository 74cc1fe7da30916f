"""Training checkpoints for `python -m tasks.train`: safetensors + JSON, no pickle, hash-checked.

A checkpoint is one directory, replaced as a whole each epoch (`tasks.core.io.atomic_dir`):
`model.safetensors` (current weights), `best.safetensors` (best weights so far),
`optimizer.safetensors` (the optimizer's per-parameter tensors) and `state.json` (epoch and
early-stopping counters, history, and the sha256 of each tensor file). A kill or a full disk while
writing leaves the previous checkpoint complete.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from tasks.core.io import atomic_dir, write_bytes, write_json

STATE_FILE = "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used; the message names the file."""


def fresh_state() -> dict[str, Any]:
    return {
        "epochs_run": 0,
        "best_epoch": 0,
        "best_val_loss": None,
        "best_val_acc": None,
        "bad_epochs": 0,
        "history": [],
    }


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    best: dict[str, torch.Tensor],
    state: dict[str, Any],
) -> None:
    # Optimizer state {param index: {name: tensor}} flattened to "index.name"; hyperparameters
    # are not saved: the checkpoint key covers them, so the resuming optimizer already has them.
    opt = {
        f"{i}.{name}": t
        for i, s in optimizer.state_dict()["state"].items()
        for name, t in s.items()
    }
    files = {
        "model.safetensors": model.state_dict(),
        "best.safetensors": best,
        "optimizer.safetensors": opt,
    }
    hashes = {}
    with atomic_dir(path) as tmp:
        for name, tensors in files.items():
            blob = save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
            write_bytes(tmp / name, blob)
            hashes[name] = hashlib.sha256(blob).hexdigest()
        write_json(tmp / STATE_FILE, {**state, "sha256": hashes})


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None]:
    """Load model and optimizer in place; returns (state, best weights), (fresh, None) if none."""
    if not path.exists():
        aside = path.parent / f".{path.name}.old"  # atomic_dir's copy if killed between renames
        if not aside.exists():
            return fresh_state(), None
        path = aside
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        tensors = {}
        for name, expected in state.pop("sha256").items():
            blob = (path / name).read_bytes()
            if hashlib.sha256(blob).hexdigest() != expected:
                raise CheckpointError(f"{path / name} fails its sha256 check")
            tensors[name] = load_safetensors(blob)
        model.load_state_dict(tensors["model.safetensors"])
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, tensor in tensors["optimizer.safetensors"].items():
            index, name = key.split(".", 1)
            opt_state.setdefault(int(index), {})[name] = tensor
        full = optimizer.state_dict()
        optimizer.load_state_dict({**full, "state": opt_state})
        best = tensors["best.safetensors"]
    except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(
            f"cannot resume from {path}: {exc}; delete it to start over"
        ) from None
    return state, best
