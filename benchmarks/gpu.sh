#!/usr/bin/env bash
# The GPU check of issue 5, in one short script (about 3 minutes on an H200):
#   bash benchmarks/gpu.sh
# Prints the training engine's samples/s (tokens/s for the language model) against a minimal
# plain-PyTorch loop for the sequence task types (benchmarks/train_overhead.py), and the digits
# CNN's time to 98% validation accuracy and its samples/s (benchmarks/time_to_accuracy.py).
# On a machine with 2 or more GPUs, also the multi-GPU case of issue 19: the engine under torchrun
# on every GPU (NCCL, bf16 autocast) against one GPU with the same global batch, tokens/s and
# final validation loss (benchmarks/distributed_scaling.py); skipped with a line on one GPU.
# Needs only torch, numpy and safetensors: the GPU machine has no scikit-learn, so the digits
# file travels as benchmarks/data/digits.csv.gz (copied here from the local scikit-learn first).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DIGITS=benchmarks/data/digits.csv.gz
if [ ! -f "$DIGITS" ]; then
    mkdir -p benchmarks/data
    "$PY" - "$DIGITS" <<'EOF'
import importlib.util, shutil, sys
from pathlib import Path
spec = importlib.util.find_spec("sklearn")
if spec is None:
    sys.exit("no benchmarks/data/digits.csv.gz and no scikit-learn to copy it from")
shutil.copyfile(Path(spec.origin).parent / "datasets/data/digits.csv.gz", sys.argv[1])
EOF
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
KILN_DIGITS=$DIGITS "$PY" -m benchmarks.time_to_accuracy 0.98 5
"$PY" -m benchmarks.train_overhead 5 forecasting,text,lm
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
if [ "$GPUS" -ge 2 ]; then
    "$PY" -m benchmarks.distributed_scaling "$GPUS" 3
else
    echo "multi-GPU case skipped: $GPUS GPU(s) here, it needs 2 or more"
fi
