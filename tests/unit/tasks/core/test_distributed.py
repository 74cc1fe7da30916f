"""Distributed training: `python -m pytest tests/unit/tasks/core/test_distributed.py`.

Two gloo processes on the CPU under the real torchrun, started by the train stage's launcher
(`tasks.core.distributed.launch`), on tiny data: the engine's results on 2 processes against 1
with the same global batch; a crash on one rank failing the run, and its checkpoint resuming on 1
process; SIGTERM to the stage, or SIGKILL to torchrun, stopping every rank; and the image train
stage (`python -m tasks.train` re-launching itself under torchrun) writing from rank 0 only. Each
torchrun start imports torch in 3 processes (~9 s of CPU on 2 shared cores).

Tolerance: 1e-5 (absolute, on metrics and weights). 2 ranks average two half-batch gradients
where 1 process averages one batch: the same sum in another order, float32 rounding apart
(~1e-7 after 32 steps, measured). Contiguous shards in place of the sampler's (each step then
another set of samples than one process's) moved the first epoch's train loss by 2.5e-3.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tasks.core.distributed import launch, torchrun_command
from tasks.core.params import DistributedParams, TrainParams
from tests.clean_fixture import write_project, write_trained_project
from tests.unit.tasks.core.distributed_fit import fit, summary

REPO = Path(__file__).resolve().parents[4]
TOL = 1e-5  # see the module docstring
TWO = DistributedParams(nproc_per_node=2)


def _env(**extra: str) -> dict[str, str]:
    # 1 thread per rank: 2 ranks on 2 shared cores (torchrun would set it too, with a warning)
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def _launch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fail_after: int = 0) -> int:
    """distributed_fit.py on 2 processes through the stage's own launcher; its exit code."""
    for name, value in _env(
        FIT_RESULT=str(tmp_path / "result.json"),
        FIT_FAIL_AFTER=str(fail_after),
        FIT_CHECKPOINT=str(tmp_path / "checkpoint"),
    ).items():
        monkeypatch.setenv(name, value)
    return launch(TWO, "tests.unit.tasks.core.distributed_fit")


def _close(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["epochs_run"] == b["epochs_run"]
    for row_a, row_b in zip(a["history"], b["history"], strict=True):
        assert row_a.keys() == row_b.keys()
        for key in row_a:
            assert row_a[key] == pytest.approx(row_b[key], abs=TOL), (row_a["epoch"], key)
    for name, weights in a["weights"].items():
        diff = (torch.tensor(weights) - torch.tensor(b["weights"][name])).abs().max()
        assert diff < TOL, name


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return summary(fit(tmp_path_factory.mktemp("one") / "checkpoint"))


def test_two_processes_match_one_with_the_same_global_batch(
    tmp_path: Path, one_process: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _launch(monkeypatch, tmp_path) == 0
    two = json.loads((tmp_path / "result.json").read_text())
    assert two["world"] == 2
    _close(two, one_process)
    # the weights moved: a run that trained nothing would match as well
    assert two["history"][-1]["val_loss"] < two["history"][0]["val_loss"] - 0.05


def test_a_crash_on_one_rank_fails_the_run_and_one_process_resumes_it(
    tmp_path: Path,
    one_process: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    checkpoint = tmp_path / "checkpoint"
    assert _launch(monkeypatch, tmp_path, fail_after=2) == 1  # torchrun's code: a rank failed
    stderr = capfd.readouterr().err  # the ranks' and torchrun's
    assert "rank 1 crashes after epoch 2" in stderr
    assert "exitcode  : 1" in stderr  # torchrun's report of the failed rank
    assert "train failed: torchrun exited 1" in caplog.text
    assert not (tmp_path / "result.json").exists()
    # rank 0 was stopped by torchrun while or after writing epoch 2's checkpoint
    assert json.loads((checkpoint / "state.json").read_text())["epochs_run"] in (1, 2)
    _close(summary(fit(checkpoint)), one_process)


# An audit hook in every Python process of the stage (the launcher, torchrun, both ranks) that
# logs each file write, rename, removal or directory creation under the project, per RANK.
AUDIT = textwrap.dedent("""
    import os, sys
    _ROOT = os.path.realpath(os.environ["AUDIT_ROOT"]) + os.sep
    _LOG = os.path.join(os.environ["AUDIT_DIR"], "writes-" + os.environ.get("RANK", "none"))
    _WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    _CHANGES = {"os.rename": 2, "os.remove": 1, "os.mkdir": 1, "os.rmdir": 1, "shutil.rmtree": 1}

    def _log(path):
        if isinstance(path, (str, bytes, os.PathLike)):
            full = os.path.realpath(os.fsdecode(path))
            if full.startswith(_ROOT):
                with open(_LOG, "a") as out:  # outside the project: not logged itself
                    out.write(full[len(_ROOT):] + "\\n")

    def _hook(event, args):
        if event == "open":
            path, mode, flags = args
            if (mode is not None and set(mode) & set("wax+")) or flags & _WRITES:
                _log(path)
        elif event in _CHANGES:
            for path in args[:_CHANGES[event]]:
                _log(path)

    sys.addaudithook(_hook)
""")


def test_stage_under_torchrun_writes_from_rank_0_only_and_matches_one_process(
    tmp_path: Path,
) -> None:
    train = {"model": "linear", "epochs": 2, "batch_size": 32, "patience": 2, "device": "cpu"}
    # 180 digits: 130 train, an even number: no sampler padding, so the same steps as 1 process
    two = write_project(tmp_path / "two", 180, train={**train, "distributed": TWO.model_dump()})
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "sitecustomize.py").write_text(AUDIT)
    env = _env(PYTHONPATH=f"{audit}{os.pathsep}{REPO}", AUDIT_ROOT=str(two), AUDIT_DIR=str(audit))
    cmd = [sys.executable, "-m", "tasks.train"]
    run = subprocess.run(
        cmd, cwd=two, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 processes (2 per machine x 1)" in run.stderr
    assert "on cpu x 2 processes" in run.stderr
    # rank 0 wrote models/ and reports/; the hook saw it, and nothing from rank 1 (nor torchrun)
    written = (audit / "writes-0").read_text().splitlines()
    assert any(p.startswith("models") for p in written), written
    assert any(p.startswith("reports") for p in written), written
    assert sorted(f.name for f in audit.iterdir()) == ["sitecustomize.py", "writes-0"]

    # the same stage on one process (in this process, no torchrun): the same model
    one = write_trained_project(tmp_path / "one", 180, train)
    cards = [json.loads((p / "models" / "card.json").read_text()) for p in (two, one)]
    assert cards[0]["epochs_run"] == cards[1]["epochs_run"] == 2
    assert cards[0]["best_val_loss"] == pytest.approx(cards[1]["best_val_loss"], abs=TOL)
    metrics = [json.loads((p / "reports/train/metrics.json").read_text()) for p in (two, one)]
    assert metrics[0]["best_val_acc"] == pytest.approx(metrics[1]["best_val_acc"], abs=TOL)


def _launcher(tmp_path: Path) -> subprocess.Popen[str]:
    """`distributed.launch` in a process of its own (a stage), its ranks torchrun_rank.py."""
    code = (
        "import logging, sys; from tasks.core import distributed, params; "
        "logging.basicConfig(level=logging.INFO); "
        "sys.exit(distributed.launch(params.DistributedParams(nproc_per_node=2), "
        "'tests.unit.tasks.core.torchrun_rank'))"
    )
    env = _env(RANK_DIR=str(tmp_path))
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )


def _alive(pid: int) -> bool:
    """Whether `pid` runs (Linux; a zombie, ended but not yet reaped, does not)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _rank_pids(tmp_path: Path) -> list[tuple[int, int]]:
    """(pid, parent pid) of each rank, once both have joined the group."""
    deadline = time.monotonic() + 60
    while len(files := sorted(tmp_path.glob("rank-*.pid"))) < 2:
        assert time.monotonic() < deadline, "the ranks did not start"
        time.sleep(0.1)
    time.sleep(0.2)  # the file is written
    return [(int(pid), int(parent)) for pid, parent in (f.read_text().split() for f in files)]


@pytest.mark.parametrize("kill", ["SIGTERM to the stage", "SIGKILL to torchrun"])
def test_stopping_the_stage_stops_every_rank(tmp_path: Path, kill: str) -> None:
    launcher = _launcher(tmp_path)  # its ranks end by themselves after 120 s at most
    try:
        ranks = _rank_pids(tmp_path)
        if kill == "SIGTERM to the stage":  # as a timeout, or Prefect cancelling the run would
            launcher.send_signal(signal.SIGTERM)
            assert launcher.wait(timeout=60) != 0
        else:  # the agent dies without a word: each rank's death signal (prctl) stops it
            os.kill(ranks[0][1], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid, _ in ranks):
            assert time.monotonic() < deadline, f"ranks left running: {ranks}"
            time.sleep(0.1)
    finally:
        launcher.kill()  # no-op when it has ended
        launcher.communicate()


def test_params_refuse_a_global_batch_that_does_not_divide() -> None:
    with pytest.raises(ValueError, match="batch_size 30 is the global batch"):
        TrainParams(model="cnn", batch_size=30, distributed={"nproc_per_node": 4})
    TrainParams(model="cnn", batch_size=32, distributed={"nproc_per_node": 4})


@pytest.mark.parametrize(
    ("distributed", "message"),
    [
        ({"nnodes": 2}, "needs rdzv_endpoint"),
        ({"nnodes": 2, "rdzv_endpoint": "node0"}, "is not host:port"),
        ({"nproc_per_node": 0}, "greater than or equal to 1"),
        ({"backend": "mpi"}, "'auto', 'gloo' or 'nccl'"),
    ],
)
def test_params_refuse_bad_distributed_settings(distributed: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainParams(model="cnn", distributed=distributed)


def test_params_refuse_nccl_without_cuda_and_mps() -> None:
    with pytest.raises(ValueError, match="nccl needs CUDA"):
        TrainParams(model="cnn", device="cpu", distributed={"backend": "nccl"})
    with pytest.raises(ValueError, match="neither gloo nor nccl runs on MPS"):
        TrainParams(model="cnn", device="mps", distributed={"nproc_per_node": 2})


def test_checkpoint_key_ignores_the_process_count() -> None:
    from tasks.core.training import checkpoint_key  # noqa: PLC0415

    one = TrainParams(model="cnn")
    four = TrainParams(model="cnn", distributed={"nproc_per_node": 4})
    assert checkpoint_key(one, "v1", ["a"]) == checkpoint_key(four, "v1", ["a"])
    assert "distributed" not in one.checkpoint_dump()


def test_torchrun_command_one_machine_and_several() -> None:
    assert torchrun_command(TWO)[1:] == [
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--standalone",
        "-m",
        "tasks.train",
    ]
    many = DistributedParams(nproc_per_node=8, nnodes=2, rdzv_endpoint="10.0.0.1:29400")
    assert torchrun_command(many)[3:-2] == [
        "--nproc-per-node=8",
        "--nnodes=2",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=10.0.0.1:29400",
        "--rdzv-id=kiln-train",
    ]
