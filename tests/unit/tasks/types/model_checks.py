"""Checks every sequence architecture passes, whatever its task type (types/*/test_models.py).

Each architecture is built from its config through `tasks.core.models.build_model` with its task
type's ARCHITECTURES, round-trips through a card without pickle, and learns a tiny synthetic task
through `tasks.core.engine.fit` on CPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from tasks.core.engine import EngineConfig, EngineResult, TaskData, fit
from tasks.core.models import Architectures, build_model, load_model, save_model
from tasks.core.objectives import LossFn, MetricFn


def build(
    architectures: Architectures, architecture: str, config: dict[str, object], seed: int = 0
) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(architectures, architecture, config)


def check_shape_and_card_round_trip(
    architectures: Architectures,
    architecture: str,
    config: dict[str, object],
    *,
    x: torch.Tensor,
    shape: tuple[int, ...],
    directory: Path,
) -> None:
    model = build(architectures, architecture, config).eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == shape and torch.isfinite(out).all()
    full = dataclasses.asdict(model.config)  # the card holds every field, defaults included
    card = {"architecture": architecture, "config": full, "classes": [], "preprocessing": {}}
    save_model(model, directory, card)
    loaded, card = load_model(directory, architectures)
    assert card["config"] == full and full.items() >= config.items()
    with torch.no_grad():
        assert torch.equal(loaded(x), out)


def split(x: torch.Tensor, y: torch.Tensor, n_val: int) -> TaskData:
    return TaskData(x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:])


def train(
    architectures: Architectures,
    architecture: str,
    config: dict[str, object],
    *,
    objective: tuple[LossFn, MetricFn],
    data: TaskData,
    path: Path,
    **kw: object,
) -> EngineResult:
    cfg = EngineConfig(**{"epochs": 8, "batch_size": 32, "lr": 1e-2, "patience": 8, **kw})
    loss_fn, metric_fn = objective
    model, path = build(architectures, architecture, config), path / architecture
    return fit(model, data, loss_fn, metric_fn, cfg=cfg, checkpoint_path=path)
