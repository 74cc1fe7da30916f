"""The evaluate stage: `python -m tasks.evaluate` (DVC stage `evaluate`).

models/ + data/clean -> reports/metrics.json, reports/evaluation/.
The work is the task type's (`project.task`): `tasks/types/<task type>/`, found through
`tasks.core.plugins`; this module only starts it.
"""

from tasks.core.stage import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("evaluate"))
