"""One rank of tests/unit/tasks/core/test_distributed.py's runs, started by the real torchrun
(through `tasks.core.distributed.launch`, as the train stage is):

    FIT_RESULT=result.json FIT_CHECKPOINT=dir [FIT_FAIL_AFTER=2] \\
        python -m torch.distributed.run --standalone --nproc-per-node=2 \\
        -m tests.unit.tasks.core.distributed_fit

Joins the gloo process group, fits `model()` on `data()` with CFG through the engine, and rank 0
writes the result (history, weights) to FIT_RESULT. FIT_FAIL_AFTER: rank 1 raises after that
epoch (a crash on one rank), leaving rank 0's checkpoint to resume from. The test fits the same
in process for the one-process side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

from tasks.core import distributed
from tasks.core.engine import EngineConfig, EngineResult, TaskData
from tasks.core.objectives import classification_metrics

# 256 samples / global batch 32: 8 steps an epoch, 16 samples per rank on 2 ranks (no padding).
# Cosine schedule with warmup: the learning rate depends on the global step, which must agree.
CFG = EngineConfig(epochs=4, batch_size=32, lr=3e-2, patience=4, schedule="cosine", warmup_steps=4)


def data() -> TaskData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 8, generator=g)
    y = ((x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()) % 3  # 3 classes, not separable
    return TaskData(x[:256], y[:256], x[256:], y[256:])


def model() -> nn.Module:
    """No dropout: 2 ranks' masks for 16 samples each cannot be one process's for 32."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))


def fit(checkpoint: Path, fail_after: int = 0) -> EngineResult:
    from tasks.core.engine import fit as engine_fit  # noqa: PLC0415 (the name is this module's)

    def crash(row: dict[str, float]) -> None:
        if row["epoch"] == fail_after and distributed.world()[0] == 1:
            raise RuntimeError(f"rank 1 crashes after epoch {fail_after} (as asked)")

    return engine_fit(
        model(),
        data(),
        F.cross_entropy,
        classification_metrics,
        cfg=CFG,
        checkpoint_path=checkpoint,
        on_epoch=crash if fail_after else None,
    )


def summary(result: EngineResult) -> dict[str, Any]:
    return {
        "epochs_run": result.epochs_run,
        "history": result.history,
        "weights": {k: v.tolist() for k, v in result.model.state_dict().items()},
    }


if __name__ == "__main__":
    out, checkpoint = Path(os.environ["FIT_RESULT"]), Path(os.environ["FIT_CHECKPOINT"])
    with distributed.process_group("gloo"):
        result = fit(checkpoint, int(os.environ.get("FIT_FAIL_AFTER", "0")))
        if distributed.is_rank0():
            out.write_text(json.dumps({**summary(result), "world": distributed.world()[1]}))
