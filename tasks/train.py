"""The train stage: `python -m tasks.train` (DVC stage `train`).

data/clean -> models/ (card.json + model.safetensors), reports/train/ (DVCLive).
The work is the task type's (`project.task`): `tasks/types/<task type>/`, found through
`tasks.core.plugins`; this module only starts it. When `train.distributed` declares several
processes, it re-launches itself under torchrun, one process per rank (tasks/core/distributed.py).
"""

from tasks.core.stage import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("train"))
