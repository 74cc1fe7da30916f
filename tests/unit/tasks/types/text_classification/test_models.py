"""Text classification models (tasks/types/text_classification/models.py).

The Transformer encoder classifier: shapes, a card round trip without pickle, a bad config named,
padding ignored, and a 2-class byte-text task learnt through the engine on CPU (a few seconds).
The minilm architecture (transformers' BertModel + mean pool + head) with a tiny config: the same
card round trip and padding checks, and pretrained weights that do not fit refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from safetensors.torch import save_file

from tasks.core.models import ModelError, build_model
from tasks.core.objectives import classification_metrics
from tasks.types.text_classification.minilm import MiniLMError, load_pretrained
from tasks.types.text_classification.models import ARCHITECTURES
from tests.unit.tasks.types.model_checks import build, check_shape_and_card_round_trip, split, train

TEXT = {"vocab_size": 64, "max_len": 20, "n_classes": 3, "d_model": 16, "n_heads": 2, "n_layers": 1}
MINILM = {
    "n_classes": 3,
    "vocab_size": 64,
    "hidden": 16,
    "layers": 2,
    "heads": 2,
    "intermediate": 32,
}


def test_shapes_and_card_round_trip_without_pickle(tmp_path: Path) -> None:
    x = torch.randint(1, 64, (5, 20))
    check_shape_and_card_round_trip(
        ARCHITECTURES, "transformer_encoder", TEXT, x=x, shape=(5, 3), directory=tmp_path
    )


def test_minilm_shapes_and_card_round_trip_without_pickle(tmp_path: Path) -> None:
    x = torch.randint(1, 64, (5, 20))
    x[1:, 12:] = 0  # padding (pad_id 0)
    check_shape_and_card_round_trip(
        ARCHITECTURES, "minilm", MINILM, x=x, shape=(5, 3), directory=tmp_path
    )


def test_minilm_keys_are_berts_without_prefix() -> None:
    """The state dict has BertModel's own names (as the pretrained file and the minilm models
    Kiln saved before it used BertModel) and the head; the pooler is left out."""
    keys = list(build(ARCHITECTURES, "minilm", MINILM).state_dict())
    assert keys[:2] == [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
    ]
    assert "encoder.layer.1.attention.self.query.weight" in keys
    assert "encoder.layer.1.output.LayerNorm.bias" in keys
    assert keys[-2:] == ["classifier.weight", "classifier.bias"]
    assert not [k for k in keys if k.startswith(("bert.", "pooler."))]


def test_minilm_refuses_pretrained_weights_that_do_not_fit(tmp_path: Path) -> None:
    model = build(ARCHITECTURES, "minilm", MINILM)
    encoder = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    del encoder["encoder.layer.1.output.dense.bias"]
    encoder["pooler.dense.bias"] = torch.zeros(16)  # BERT's pooler: unused, not an error
    save_file(encoder, tmp_path / "model.safetensors")
    with pytest.raises(
        MiniLMError, match=r"(?s)does not fit BertModel.*layer\.1\.output\.dense\.bias"
    ):
        load_pretrained(model, tmp_path)
    encoder["encoder.layer.1.output.dense.bias"] = torch.ones(16)
    save_file({f"bert.{k}": v for k, v in encoder.items()}, tmp_path / "model.safetensors")
    load_pretrained(model, tmp_path)  # a "bert." prefix is dropped
    assert torch.equal(model.encoder.layer[1].output.dense.bias, torch.ones(16))


def test_bad_configs_are_named() -> None:
    with pytest.raises(ModelError, match="d_model 15 not divisible by n_heads"):
        build_model(ARCHITECTURES, "transformer_encoder", {**TEXT, "d_model": 15})


def test_padding_is_ignored() -> None:
    text = build(ARCHITECTURES, "transformer_encoder", TEXT).eval()
    ids = torch.randint(1, 64, (4, 12))
    padded = torch.cat([ids, torch.zeros(4, 8, dtype=torch.long)], 1)  # pad_id 0
    with torch.no_grad():
        assert torch.allclose(text(ids), text(padded), atol=1e-5)
        assert torch.isfinite(text(torch.zeros(2, 20, dtype=torch.long))).all()  # all padding


def test_minilm_ignores_padding() -> None:
    """Pads are masked out of attention and of the mean pool: right padding changes nothing."""
    minilm = build(ARCHITECTURES, "minilm", MINILM).eval()
    ids = torch.randint(1, 64, (4, 12))
    padded = torch.cat([ids, torch.zeros(4, 8, dtype=torch.long)], 1)
    with torch.no_grad():
        assert torch.allclose(minilm(ids), minilm(padded), atol=1e-5)
        assert torch.isfinite(minilm(torch.zeros(2, 20, dtype=torch.long))).all()


def test_text_classifier_learns_a_byte_task(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 30, (480, 20), generator=g)  # class 0: bytes 2..29 only
    label = torch.randint(0, 2, (480,), generator=g)
    where = torch.randint(0, 14, (480,), generator=g)
    ids[label == 1, where[label == 1]] = 40  # class 1: one byte 40 somewhere
    ids[:, 14:] = torch.where(torch.arange(480)[:, None] % 2 == 0, 0, ids[:, 14:])  # padding
    config = {**TEXT, "n_classes": 2, "d_model": 32, "dropout": 0.0}
    data = split(ids, label, 96)
    result = train(
        ARCHITECTURES, "transformer_encoder", config,
        objective=(F.cross_entropy, classification_metrics), data=data, path=tmp_path, lr=3e-3,
    )  # fmt: skip
    assert result.best["val_acc"] >= 0.95, result.history
