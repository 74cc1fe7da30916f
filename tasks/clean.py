"""The clean stage: `python -m tasks.clean` (DVC stage `clean`).

data/validated (+ data/raw files) -> data/clean/, data/quarantine/clean.jsonl,
reports/clean.json, reports/label_issues.csv.
The work is the task type's (`project.task`): `tasks/types/<task type>/`, found through
`tasks.core.plugins`; this module only starts it.
"""

from tasks.core.stage import run_stage

if __name__ == "__main__":
    raise SystemExit(run_stage("clean"))
