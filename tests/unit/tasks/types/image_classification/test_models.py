"""The CNN and its model files (shapes, card round-trip, refusals):
`python -m pytest tests/unit/tasks/types/image_classification/test_models.py`."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from tasks.core.models import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelError,
    build_model,
    load_model,
    save_model,
)
from tasks.types.image_classification.models import ARCHITECTURES

CONFIG = {"in_channels": 1, "height": 8, "width": 8, "n_classes": 10, "channels": 4, "dropout": 0.1}
CARD = {
    "architecture": "cnn",
    "config": CONFIG,
    "classes": [str(i) for i in range(10)],
    "preprocessing": {"scale": 1 / 255, "mean": 0.3, "std": 0.4},
}


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES, "cnn", CONFIG).eval()
    save_model(model, tmp_path, CARD)
    return tmp_path, model


def _edit_card(directory: Path, **changes: object) -> None:
    card = json.loads((directory / CARD_FILE).read_text())
    card.update(changes)
    (directory / CARD_FILE).write_text(json.dumps(card))


@pytest.mark.parametrize(
    ("in_channels", "height", "width", "n_classes", "channels"),
    [(1, 8, 8, 10, 32), (1, 28, 28, 10, 8), (3, 32, 32, 5, 4), (1, 5, 7, 2, 2), (1, 1, 1, 3, 1)],
)
def test_output_shape_for_image_sizes(
    in_channels: int, height: int, width: int, n_classes: int, channels: int
) -> None:
    config = {
        **CONFIG,
        "in_channels": in_channels,
        "height": height,
        "width": width,
        "n_classes": n_classes,
        "channels": channels,
    }
    model = build_model(ARCHITECTURES, "cnn", config).eval()
    assert model(torch.zeros(3, in_channels, height, width)).shape == (3, n_classes)


def test_bad_config_and_architecture_are_named() -> None:
    with pytest.raises(ModelError, match="config.channels"):
        build_model(ARCHITECTURES, "cnn", {**CONFIG, "channels": 0})
    with pytest.raises(ModelError, match="'chanels'"):
        build_model(ARCHITECTURES, "cnn", {**CONFIG, "chanels": 4})
    with pytest.raises(ModelError, match="unknown architecture 'vit'"):
        build_model(ARCHITECTURES, "vit", CONFIG)


def test_card_round_trip(saved: tuple[Path, torch.nn.Module]) -> None:
    directory, model = saved
    loaded, card = load_model(directory, ARCHITECTURES)
    assert card["config"] == CONFIG and card["classes"] == CARD["classes"]
    assert (
        card["weights_sha256"]
        == hashlib.sha256((directory / WEIGHTS_FILE).read_bytes()).hexdigest()
    )
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert (directory / WEIGHTS_FILE).read_bytes()[8:9] == b"{"  # a safetensors header, no pickle


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_weights_are_refused(saved: tuple[Path, torch.nn.Module], damage: str) -> None:
    directory, _ = saved
    blob = bytearray((directory / WEIGHTS_FILE).read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[-10] ^= 0xFF  # one weight byte: the file still parses, only the hash can tell
    (directory / WEIGHTS_FILE).write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="truncated or tampered"):
        load_model(directory, ARCHITECTURES)


class _Payload:
    """Unpickling this creates the marker file: the proof that pickle code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("card_matches_pickle", [False, True])
def test_pickle_offered_as_weights_is_refused_and_never_runs(
    saved: tuple[Path, torch.nn.Module], tmp_path: Path, card_matches_pickle: bool
) -> None:
    directory, _ = saved
    marker = tmp_path / "pwned"
    blob = pickle.dumps({"conv1.weight": _Payload(marker)})
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))  # noqa: S301 (the payload is live)
    assert (tmp_path / "control").exists() and not marker.exists()
    (directory / WEIGHTS_FILE).write_bytes(blob)
    if card_matches_pickle:  # an attacker who also rewrote the card's hash
        _edit_card(directory, weights_sha256=hashlib.sha256(blob).hexdigest())
    with pytest.raises(ModelError, match="tampered" if not card_matches_pickle else "safetensors"):
        load_model(directory, ARCHITECTURES)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("field", "value"), [("channels", 8), ("n_classes", 3), ("in_channels", 3)]
)
def test_card_config_not_matching_weights_names_the_field(
    saved: tuple[Path, torch.nn.Module], field: str, value: int
) -> None:
    directory, _ = saved
    _edit_card(directory, config={**CONFIG, field: value})
    with pytest.raises(ModelError, match=rf"config\.{field}={value} but the weights have"):
        load_model(directory, ARCHITECTURES)


def test_card_missing_config_field_is_named(saved: tuple[Path, torch.nn.Module]) -> None:
    directory, _ = saved
    _edit_card(directory, config={k: v for k, v in CONFIG.items() if k != "dropout"})
    with pytest.raises(ModelError, match="dropout"):
        load_model(directory, ARCHITECTURES)
