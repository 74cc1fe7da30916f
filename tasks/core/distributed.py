"""Data-parallel training under torchrun: everything the engine and the train stage need, here.

`train.distributed` declares processes (nproc_per_node x nnodes). With more than one, the train
stage re-launches itself under the real torchrun (`launch`: `python -m torch.distributed.run ...
-m tasks.train`), which starts one process per rank with RANK, LOCAL_RANK and WORLD_SIZE set.
Each rank joins the process group (`process_group`: NCCL on CUDA, gloo on the CPU, one GPU per
local rank), and the engine (tasks/core/engine.py) then:

* wraps the model in DistributedDataParallel (gradients averaged over ranks at each step);
* trains each rank on its share of every global batch (`epoch_order`: torch's DistributedSampler
  over the epoch's permutation, the same permutation one process uses), so the global batch is
  `train.batch_size` and each rank's is batch_size / world size (params refuse a batch size
  that does not divide);
* validates on every rank, then takes rank 0's row (`from_rank0`), so early stopping and the best
  epoch are the same decision everywhere;
* writes checkpoints on rank 0 only; the train stages write models/ and reports/ on rank 0 only.

A checkpoint holds the unwrapped model and the optimizer state, and the data order depends only on
the seed and the epoch, so a run resumes on another number of processes.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

if TYPE_CHECKING:
    from tasks.core.params import DistributedParams

logger = logging.getLogger("kiln.train")

RDZV_ID = "kiln-train"  # torchrun's rendezvous id: the same on every machine of one run
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def under_torchrun() -> bool:
    """Whether this process is a rank that torchrun started (it sets TORCHELASTIC_RUN_ID)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def env_rank() -> int:
    """This process's global rank from torchrun's environment (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def torchrun_command(cfg: DistributedParams, module: str = "tasks.train") -> list[str]:
    """The torchrun command line that runs `python -m <module>` on cfg's processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={cfg.nproc_per_node}"]
    if cfg.nnodes == 1 and cfg.rdzv_endpoint is None:
        cmd.append("--standalone")  # a rendezvous on a free local port
    else:
        cmd += [
            f"--nnodes={cfg.nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={cfg.rdzv_endpoint}",
            f"--rdzv-id={RDZV_ID}",
        ]
    return [*cmd, "-m", module]


def launch(cfg: DistributedParams, module: str = "tasks.train") -> int:
    """Run `module` under torchrun on cfg's processes; torchrun's exit code (0: every rank ok).

    SIGTERM and SIGINT are passed on to torchrun, which stops its ranks: a killed stage leaves
    no rank behind."""
    cmd = torchrun_command(cfg, module)
    logger.info(
        f"{cfg.processes} processes ({cfg.nproc_per_node} per machine x {cfg.nnodes}): "
        f"{' '.join(cmd[1:])}"
    )
    proc = subprocess.Popen(cmd)  # noqa: S603 (our own interpreter and module)

    def forward(signum: int, _frame: Any) -> None:
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code:
        logger.error(
            f"train failed: torchrun exited {code} (a rank failed; its error is above, "
            "under torchrun's ChildFailedError)"
        )
    return code


def resolve_backend(backend: str, device: str = "auto") -> str:
    """auto -> nccl where the model trains on CUDA (train.device auto or cuda, CUDA present),
    else gloo."""
    if backend == "auto":
        on_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
        return "nccl" if on_cuda else "gloo"
    return backend


@contextmanager
def process_group(backend: str, device: str = "auto") -> Iterator[None]:
    """Join torchrun's process group for the block (RANK, WORLD_SIZE, MASTER_ADDR/PORT from its
    environment) with `backend` for the model's `device` (train.device); on NCCL each process
    takes the GPU of its local rank. The rank dies with torchrun's agent, however it dies."""
    _die_with_torchrun()
    backend = resolve_backend(backend, device)
    if backend == "nccl":
        local_rank, gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local_rank >= gpus:
            raise RuntimeError(
                f"train.distributed.nproc_per_node asks for more processes than the {gpus} "
                "GPU(s) of this machine: NCCL needs one GPU per process"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _die_with_torchrun() -> None:
    """SIGTERM to this rank when its parent, torchrun's agent, dies however it dies (kill -9
    included). torchrun starts each rank in a session of its own, out of reach of a signal to the
    stage's process group (flows/stage_guard.py), so a killed agent would leave ranks behind."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the agent died before prctl: nobody would send the signal
            sys.exit(128 + signal.SIGTERM)


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_rank0() -> bool:
    """Whether this process writes outputs: rank 0, or the only process."""
    return world()[0] == 0


def wrap(model: nn.Module) -> nn.Module:
    """`model` in DistributedDataParallel when several ranks train, else `model` itself."""
    if world()[1] == 1:
        return model
    on_gpu = next(model.parameters()).device.type == "cuda"
    devices = [torch.cuda.current_device()] if on_gpu else None  # None: CPU (gloo)
    return DistributedDataParallel(model, device_ids=devices)


def epoch_order(n: int, seed: int) -> torch.Tensor:
    """This rank's sample indices for one epoch, in order; `seed` = train.seed + epoch.

    One process: torch.randperm(n) from a generator seeded `seed`. Several: DistributedSampler's
    share of that same permutation (it draws it the same way), padded by repeating its first
    indices to a multiple of the world size, rank r taking positions r, r + W, r + 2W, ... So
    step s of every rank together covers positions [s*B, (s+1)*B) of the permutation, exactly
    one process's batch s for a global batch B divisible by W (the last, short batch gains at
    most W - 1 repeated samples). The order depends on the seed only, not on the world size: a
    checkpoint resumes on another number of processes."""
    rank, size = world()
    if size == 1:
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sampler = DistributedSampler(range(n), num_replicas=size, rank=rank, shuffle=True, seed=seed)
    return torch.tensor(list(sampler), dtype=torch.long)


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum of `value` over ranks (a copy), or `value` itself on one process."""
    if world()[1] == 1:
        return value
    total = value.clone()
    dist.all_reduce(total)
    return total


def from_rank0(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (pickled; for small objects such as a metrics row)."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order ([obj] on one process)."""
    rank, size = world()
    if size == 1:
        return [obj]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, obj)
    return out
