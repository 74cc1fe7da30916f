"""Text generation models: `python -m pytest tests/unit/tasks/types/text_generation/test_models.py`.

The character Transformer and LSTM: shapes, a card round trip without pickle, bad configs and
inputs named, causality, and a repeated string learnt through the engine on CPU (a few seconds).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tasks.core.models import ModelError, build_model
from tasks.core.objectives import lm_loss, lm_metrics
from tasks.types.text_generation.models import ARCHITECTURES
from tests.unit.tasks.types.model_checks import build, check_shape_and_card_round_trip, split, train

LM = {"vocab_size": 64, "block_size": 16, "d_model": 16, "n_heads": 2, "n_layers": 1}


def test_shapes_and_card_round_trip_without_pickle(tmp_path: Path) -> None:
    x = torch.randint(0, 64, (5, 16))
    check_shape_and_card_round_trip(
        ARCHITECTURES, "char_transformer", LM, x=x, shape=(5, 16, 64), directory=tmp_path
    )


def test_bad_configs_and_inputs_are_named() -> None:
    with pytest.raises(ModelError, match="unknown config field"):
        build_model(ARCHITECTURES, "char_transformer", {**LM, "n_embd": 16})
    with pytest.raises(ModelError, match="17 tokens, block_size is 16"):
        build_model(ARCHITECTURES, "char_transformer", LM)(torch.zeros(1, 17, dtype=torch.long))


def test_attention_is_causal() -> None:
    lm = build(ARCHITECTURES, "char_transformer", LM).eval()
    ids = torch.randint(0, 64, (2, 16))
    changed = ids.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 64
    with torch.no_grad():
        assert torch.equal(lm(ids)[:, :10], lm(changed)[:, :10])
        assert not torch.equal(lm(ids)[:, 10:], lm(changed)[:, 10:])


def test_char_transformer_learns_a_repeated_string(tmp_path: Path) -> None:
    text = torch.tensor(list(b"kiln trains every task. " * 60))
    starts = torch.randint(0, len(text) - 17, (400,), generator=torch.Generator().manual_seed(0))
    windows = text[starts[:, None] + torch.arange(17)]
    config = {**LM, "vocab_size": 256}
    data = split(windows[:, :-1], windows[:, 1:], 64)
    result = train(
        ARCHITECTURES, "char_transformer", config,
        objective=(lm_loss, lm_metrics), data=data, path=tmp_path,
    )  # fmt: skip
    assert result.best["val_loss"] < 0.3 < result.history[0]["val_loss"], result.history
    prompt = torch.tensor([list(b"kiln trains ")])
    sample = bytes(result.model.generate(prompt, 12, temperature=0)[0].tolist())
    assert sample == b"kiln trains every task. "


LSTM = {"vocab_size": 64, "block_size": 16, "d_model": 16, "n_layers": 2}


def test_char_lstm_shapes_card_round_trip_and_bad_inputs(tmp_path: Path) -> None:
    x = torch.randint(0, 64, (5, 16))
    check_shape_and_card_round_trip(
        ARCHITECTURES, "char_lstm", LSTM, x=x, shape=(5, 16, 64), directory=tmp_path
    )
    with pytest.raises(ModelError, match="unknown config field"):
        build_model(ARCHITECTURES, "char_lstm", {**LSTM, "n_heads": 2})
    with pytest.raises(ModelError, match="17 tokens, block_size is 16"):
        build_model(ARCHITECTURES, "char_lstm", LSTM)(torch.zeros(1, 17, dtype=torch.long))


def test_char_lstm_is_causal_and_learns_a_repeated_string(tmp_path: Path) -> None:
    lm = build(ARCHITECTURES, "char_lstm", LSTM).eval()
    ids = torch.randint(0, 64, (2, 16))
    changed = ids.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 64
    with torch.no_grad():
        assert torch.equal(lm(ids)[:, :10], lm(changed)[:, :10])
    text = torch.tensor(list(b"kiln trains every task. " * 60))
    starts = torch.randint(0, len(text) - 17, (400,), generator=torch.Generator().manual_seed(0))
    windows = text[starts[:, None] + torch.arange(17)]
    data = split(windows[:, :-1], windows[:, 1:], 64)
    result = train(
        ARCHITECTURES, "char_lstm", {**LSTM, "vocab_size": 256, "d_model": 64, "n_layers": 1},
        objective=(lm_loss, lm_metrics), data=data, path=tmp_path, epochs=12, lr=0.02,
    )  # fmt: skip
    assert result.best["val_loss"] < 0.3 < result.history[0]["val_loss"], result.history
