"""Train stage: `python -m pytest tests/unit/tasks/types/image_classification/test_train.py`
(determinism, kill + resume, faults).

Tiny data (200 digits) and a 4-channel CNN keep each training run well under a second; the
kill/resume test runs `python -m tasks.train` as real subprocesses (about 10 s in all).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tasks.core import checkpoint
from tasks.core.dataset import DataError
from tasks.core.engine import TrainError
from tasks.core.models import save_model
from tasks.core.params import load_params
from tasks.types.image_classification.data import TrainData, load_train_data
from tasks.types.image_classification.params import ImageTrainParams
from tasks.types.image_classification.train import train_model, train_stage
from tests.clean_fixture import CLASSES, write_clean_fixture, write_project
from tests.project import REPO

TINY = {"epochs": 3, "batch_size": 32, "channels": 4, "patience": 5}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> TrainData:
    root = tmp_path_factory.mktemp("clean")
    write_clean_fixture(root, 200)
    return load_train_data(root / "data" / "clean", CLASSES)


def _train() -> int:
    """The train stage on params.yaml of the cwd, as `python -m tasks.train` runs it."""
    return train_stage(load_params())


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_runs_give_identical_weights_sha256(data: TrainData, tmp_path: Path) -> None:
    def sha(seed: int, name: str) -> str:
        cfg = ImageTrainParams(**TINY, seed=seed)
        result = train_model(cfg, data, tmp_path / name / "checkpoints")
        return save_model(result.model, tmp_path / name, {})["weights_sha256"]

    first = sha(0, "first")
    assert sha(0, "second") == first
    assert sha(1, "other") != first


def test_nan_loss_names_epoch_and_step(data: TrainData, tmp_path: Path) -> None:
    # Decoupled weight decay with lr * weight_decay = 10 multiplies every weight by -9 per step:
    # the weights overflow float32 within a few dozen steps.
    bad = {**TINY, "epochs": 5, "lr": 10.0, "weight_decay": 1.0, "batch_size": 16}
    cfg = ImageTrainParams(**bad)
    with pytest.raises(TrainError, match=r"loss is nan at epoch \d+ step \d+ \(global step \d+\)"):
        train_model(cfg, data, tmp_path)


def test_full_disk_while_checkpointing_keeps_the_previous_one(
    data: TrainData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = ImageTrainParams(**TINY)
    reference = _weights(train_model(cfg, data, tmp_path / "reference").model)
    real_write, calls = checkpoint.write_bytes, []

    def write_until_full(target: Path, blob: bytes) -> None:
        calls.append(target)
        if len(calls) > 4:  # 3 tensor files per checkpoint: the 2nd checkpoint hits a full disk
            raise OSError(28, "No space left on device")
        real_write(target, blob)

    monkeypatch.setattr(checkpoint, "write_bytes", write_until_full)
    with pytest.raises(OSError, match="No space left"):
        train_model(cfg, data, tmp_path / "ck")
    monkeypatch.undo()
    (key_dir,) = (tmp_path / "ck").iterdir()
    assert json.loads((key_dir / "state.json").read_text())["epochs_run"] == 1
    resumed = train_model(cfg, data, tmp_path / "ck")
    assert _same(_weights(resumed.model), reference)


def test_crash_between_checkpoint_renames_resumes_from_the_aside_copy(
    data: TrainData, tmp_path: Path
) -> None:
    cfg = ImageTrainParams(**{**TINY, "epochs": 2})
    reference = _weights(train_model(cfg, data, tmp_path / "reference").model)
    train_model(cfg, data, tmp_path / "ck")
    (key_dir,) = (tmp_path / "ck").iterdir()
    state = json.loads((key_dir / "state.json").read_text())
    assert state["epochs_run"] == 2
    # atomic_dir moves the old checkpoint to .<key>.old before renaming the new one in; a kill
    # between the two renames leaves only the aside copy.
    key_dir.rename(key_dir.parent / f".{key_dir.name}.old")
    resumed = train_model(cfg, data, tmp_path / "ck")
    assert resumed.epochs_run == 2 and _same(_weights(resumed.model), reference)


def test_corrupt_checkpoint_is_refused(data: TrainData, tmp_path: Path) -> None:
    cfg = ImageTrainParams(**{**TINY, "epochs": 1})
    train_model(cfg, data, tmp_path)
    (key_dir,) = tmp_path.iterdir()
    (key_dir / "optimizer.safetensors").write_bytes(b"not the bytes it was")
    with pytest.raises(TrainError, match=r"optimizer.safetensors fails its sha256 check"):
        train_model(cfg, data, tmp_path)


def test_labels_disagreeing_with_classes_fail(tmp_path: Path) -> None:
    write_clean_fixture(tmp_path, 50)
    with pytest.raises(DataError, match="labels disagree with params labels.classes"):
        load_train_data(tmp_path / "data" / "clean", list(reversed(CLASSES)))


def test_stage_writes_models_and_live_reports_then_clears_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(tmp_path, 200, train=TINY)
    monkeypatch.chdir(tmp_path)
    assert _train() == 0
    card = json.loads((tmp_path / "models" / "card.json").read_text())
    assert card["epochs_run"] == 3 and card["classes"] == CLASSES
    assert card["config"]["channels"] == 4 and card["train_params"]["lr"] == 0.003
    assert set(card["preprocessing"]) == {
        *("height", "width", "mode", "fit", "resample", "background", "normalise"),  # how clean fit
        *("scale", "mean", "std"),  # the normalisation inside the model
    }
    # a data/clean of the fixture (no preprocessing.json): its grayscale images at their own size
    assert card["preprocessing"]["fit"] == "none" and card["preprocessing"]["mode"] == "L"
    assert len(card["preprocessing"]["mean"]) == len(card["preprocessing"]["std"]) == 1
    metrics = json.loads((tmp_path / "reports" / "train" / "metrics.json").read_text())
    assert metrics["step"] == 2 and 0.0 <= metrics["val"]["acc"] <= 1.0
    assert (tmp_path / "reports" / "train" / "plots" / "metrics" / "val" / "acc.tsv").exists()
    assert not list((tmp_path / ".kiln" / "checkpoints").iterdir())
    assert not (tmp_path / "dvc.yaml").exists() and not (tmp_path / "dvclive").exists()


def test_stage_on_nan_fails_and_writes_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {**TINY, "epochs": 5, "lr": 10.0, "weight_decay": 1.0, "batch_size": 16}
    write_project(tmp_path, 200, train=bad)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.ERROR, logger="kiln.train"):
        assert _train() == 1
    assert "step" in caplog.text and "nan" in caplog.text
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()


def _train_process(cwd: Path, sleep_s: float = 0.0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "KILN_TRAIN_EPOCH_SLEEP_S": str(sleep_s)}
    return subprocess.Popen(
        [sys.executable, "-m", "tasks.train"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _epochs_checkpointed(project: Path) -> int:
    for state in (project / ".kiln" / "checkpoints").glob("*/state.json"):
        try:
            return json.loads(state.read_text())["epochs_run"]
        except (OSError, ValueError):  # caught mid-swap: look again
            return 0
    return 0


def test_kill_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    params = {**TINY, "epochs": 6, "patience": 6}
    victim, reference = write_project(tmp_path / "victim", 200, train=params), tmp_path / "ref"
    write_project(reference, 200, train=params)
    uninterrupted = _train_process(reference)
    process = _train_process(victim, sleep_s=0.5)  # 0.5 s after each checkpoint: time to kill
    deadline = time.monotonic() + 60
    while _epochs_checkpointed(victim) < 2 and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint for epoch >= 2 within 60 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, process.stdout.read() if process.stdout else ""
    assert not (victim / "models").exists()
    assert uninterrupted.wait(timeout=120) == 0

    resumed = subprocess.run(
        [sys.executable, "-m", "tasks.train"],
        cwd=victim,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stderr
    for path in ("models/card.json", "models/model.safetensors", "reports/train/metrics.json"):
        assert (victim / path).read_bytes() == (reference / path).read_bytes(), path


# Runs train_model and save/load with the optional packages made unimportable, then evaluate_model
# and write_reports with scikit-learn back (evaluate's metrics are scikit-learn's). The plug-in
# package imports its params model, so pydantic and PyYAML are needed to import it at all.
_MINIMAL = """
import sys, types
from pathlib import Path
for name in ("dvclive", "sklearn", "matplotlib", "tqdm", "prefect", "dvc"):
    sys.modules[name] = None  # `import name` now raises ImportError
from tasks.core import models
from tasks.types.image_classification import train
from tasks.types.image_classification.data import read_clean
from tasks.types.image_classification.models import ARCHITECTURES
root = Path(sys.argv[1])
data = train.load_train_data(root / "data" / "clean", [str(i) for i in range(10)])
fields = dict(model="cnn", epochs=1, batch_size=32, lr=3e-3, weight_decay=0.0, patience=1,
              channels=2, dropout=0.0, seed=0, device="auto", optimizer="adamw", grad_clip=0.0,
              schedule="constant", warmup_steps=0, monitor="val_loss", compile=False)
cfg = types.SimpleNamespace(**fields, model_dump=lambda mode=None: fields,
                            checkpoint_dump=lambda: fields)
result = train.train_model(cfg, data, root / "checkpoints")
card = {"architecture": "cnn", "config": result.config, "classes": list(data.classes),
        "preprocessing": result.preprocessing}
models.save_model(result.model, root / "models", card)
model, card = models.load_model(root / "models", ARCHITECTURES)
del sys.modules["sklearn"]  # evaluate's metrics from here on
from tasks.core.classification import write_reports
from tasks.types.image_classification.evaluate import evaluate_model
from tests.project import REPO
outcome = evaluate_model(model, card, read_clean(root / "data" / "clean").split("test"))
write_reports(outcome, root / "reports")
print(sorted(p.name for p in (root / "reports").iterdir()),
      sorted(p.name for p in (root / "reports" / "evaluation").iterdir()),
      sorted(p.name for p in (root / "reports" / "evaluation" / "plots").iterdir()))
"""


def test_stage_cores_need_no_optional_package(tmp_path: Path) -> None:
    write_clean_fixture(tmp_path, 100)
    run = subprocess.run(
        [sys.executable, "-c", _MINIMAL, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['evaluation', 'metrics.json'] ['plots'] ['predictions.csv']"
    assert "matplotlib is not installed" in run.stderr
