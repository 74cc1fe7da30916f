"""The export stage: `python -m tasks.export` (DVC stage `export`).

models/ -> export/model.onnx + export/onnx.json, after a parity check against PyTorch.
The work is the task type's (`project.task`): `tasks/types/<task type>/`, found through
`tasks.core.plugins`; this module only starts it.
"""

from tasks.core.stage import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("export"))
