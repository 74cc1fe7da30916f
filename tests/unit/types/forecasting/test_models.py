"""Sequence models: `python -m pytest tests/unit/test_models_seq.py` (shapes, cards, learning).

Each architecture is built from its config through `tasks.models.build_model`, round-trips through
a card without pickle, and learns a tiny synthetic task through `tasks.engine.fit` on CPU (sine
forecasting, a 2-class byte-text task, a repeated-string language model; a few seconds each).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from tasks.engine import EngineConfig, EngineResult, TaskData, fit
from tasks.models import ModelError, build_model, load_model, save_model
from tasks.objectives import OBJECTIVES

RNN = {"n_features": 2, "horizon": 3, "hidden": 8, "layers": 2, "dropout": 0.1}
TEXT = {"vocab_size": 64, "max_len": 20, "n_classes": 3, "d_model": 16, "n_heads": 2, "n_layers": 1}
LM = {"vocab_size": 64, "block_size": 16, "d_model": 16, "n_heads": 2, "n_layers": 1}
CASES = {  # architecture: (config, example input, output shape)
    "lstm": (RNN, torch.randn(5, 11, 2), (5, 3)),
    "gru": (RNN, torch.randn(5, 7, 2), (5, 3)),
    "transformer_encoder": (TEXT, torch.randint(1, 64, (5, 20)), (5, 3)),
    "char_transformer": (LM, torch.randint(0, 64, (5, 16)), (5, 16, 64)),
}


def _build(architecture: str, config: dict[str, object], seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(architecture, config)


@pytest.mark.parametrize("architecture", sorted(CASES))
def test_shapes_and_card_round_trip_without_pickle(architecture: str, tmp_path: Path) -> None:
    config, x, shape = CASES[architecture]
    model = _build(architecture, config).eval()
    with torch.no_grad():
        out = model(x)
    assert out.shape == shape and torch.isfinite(out).all()
    full = dataclasses.asdict(model.config)  # the card holds every field, defaults included
    card = {"architecture": architecture, "config": full, "classes": [], "preprocessing": {}}
    save_model(model, tmp_path, card)
    loaded, card = load_model(tmp_path)
    assert card["config"] == full and full.items() >= config.items()
    with torch.no_grad():
        assert torch.equal(loaded(x), out)


def test_bad_configs_and_inputs_are_named() -> None:
    with pytest.raises(ModelError, match="config.horizon must be a positive integer"):
        build_model("lstm", {**RNN, "horizon": 0})
    with pytest.raises(ModelError, match="d_model 15 not divisible by n_heads"):
        build_model("transformer_encoder", {**TEXT, "d_model": 15})
    with pytest.raises(ModelError, match="unknown config field"):
        build_model("char_transformer", {**LM, "n_embd": 16})
    with pytest.raises(ModelError, match="17 tokens, block_size is 16"):
        build_model("char_transformer", LM)(torch.zeros(1, 17, dtype=torch.long))


def test_padding_is_ignored_and_attention_is_causal() -> None:
    text = _build("transformer_encoder", TEXT).eval()
    ids = torch.randint(1, 64, (4, 12))
    padded = torch.cat([ids, torch.zeros(4, 8, dtype=torch.long)], 1)  # pad_id 0
    with torch.no_grad():
        assert torch.allclose(text(ids), text(padded), atol=1e-5)
        assert torch.isfinite(text(torch.zeros(2, 20, dtype=torch.long))).all()  # all padding
    lm = _build("char_transformer", LM).eval()
    ids = torch.randint(0, 64, (2, 16))
    changed = ids.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 64
    with torch.no_grad():
        assert torch.equal(lm(ids)[:, :10], lm(changed)[:, :10])
        assert not torch.equal(lm(ids)[:, 10:], lm(changed)[:, 10:])


def _train(
    architecture: str,
    config: dict[str, object],
    task: str,
    data: TaskData,
    path: Path,
    **kw: object,
) -> EngineResult:
    cfg = EngineConfig(**{"epochs": 8, "batch_size": 32, "lr": 1e-2, "patience": 8, **kw})
    loss_fn, metric_fn = OBJECTIVES[task]
    model, path = _build(architecture, config), path / architecture
    return fit(model, data, loss_fn, metric_fn, cfg=cfg, checkpoint_path=path)


def _split(x: torch.Tensor, y: torch.Tensor, n_val: int) -> TaskData:
    return TaskData(x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:])


@pytest.mark.parametrize("architecture", ["lstm", "gru"])
def test_forecaster_learns_a_sine_wave(architecture: str, tmp_path: Path) -> None:
    t = torch.arange(600, dtype=torch.float32)
    series = torch.sin(2 * math.pi * t / 16)  # period 16 steps, variance 0.5
    windows = series.unfold(0, 20 + 4, 1)  # 20 steps in, 4 out
    x, y = windows[:, :20, None], windows[:, 20:]
    config = {"n_features": 1, "horizon": 4, "hidden": 16, "layers": 1, "dropout": 0.0}
    result = _train(architecture, config, "forecasting", _split(x, y, 100), tmp_path, epochs=5)
    first = result.history[0]["val_loss"]
    assert result.best["val_loss"] < 0.02 < first, result.history  # mean predictor: 0.5


def test_text_classifier_learns_a_byte_task(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 30, (480, 20), generator=g)  # class 0: bytes 2..29 only
    label = torch.randint(0, 2, (480,), generator=g)
    where = torch.randint(0, 14, (480,), generator=g)
    ids[label == 1, where[label == 1]] = 40  # class 1: one byte 40 somewhere
    ids[:, 14:] = torch.where(torch.arange(480)[:, None] % 2 == 0, 0, ids[:, 14:])  # padding
    config = {**TEXT, "n_classes": 2, "d_model": 32, "dropout": 0.0}
    data = _split(ids, label, 96)
    result = _train("transformer_encoder", config, "text_classification", data, tmp_path, lr=3e-3)
    assert result.best["val_acc"] >= 0.95, result.history


def test_char_transformer_learns_a_repeated_string(tmp_path: Path) -> None:
    text = torch.tensor(list(b"kiln trains every task. " * 60))
    starts = torch.randint(0, len(text) - 17, (400,), generator=torch.Generator().manual_seed(0))
    windows = text[starts[:, None] + torch.arange(17)]
    config = {**LM, "vocab_size": 256}
    data = _split(windows[:, :-1], windows[:, 1:], 64)
    result = _train("char_transformer", config, "text_generation", data, tmp_path)
    assert result.best["val_loss"] < 0.3 < result.history[0]["val_loss"], result.history
    prompt = torch.tensor([list(b"kiln trains ")])
    sample = bytes(result.model.generate(prompt, 12, temperature=0)[0].tolist())
    assert sample == b"kiln trains every task. "
