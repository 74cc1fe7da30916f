"""The crawl stage with a source other than the crawl, as DVC runs it (`python -m tasks.crawl` in a
project): it reads the source into data/raw, and a bad source fails the stage with a message
naming the file and line, leaving data/raw and reports/crawl.json as they were."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from tests.project import REPO, merge_params, run

SOURCE = {"kind": "table", "path": "in/jokes.csv",
          "fields": {"text": {"column": "joke"}, "label": {"column": "language"}}}  # fmt: skip


def _stage(project: Path) -> tuple[int, str]:
    proc = run([sys.executable, "-m", "tasks.crawl"], project, check=False,
               extra_env={"PYTHONPATH": str(REPO)})  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def test_the_crawl_stage_reads_a_table_and_refuses_a_bad_one(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "examples/table.params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merge_params(raw, {"source": SOURCE})))
    (tmp_path / "in").mkdir()
    csv_path = tmp_path / "in/jokes.csv"
    csv_path.write_text("joke,language\nA joke in English,en\nEin Witz,de\n", encoding="utf-8")
    code, log = _stage(tmp_path)
    assert code == 0, log
    assert "source table: 2 rows, 0 rejects" in log
    before = {p: p.read_bytes() for p in [*(tmp_path / "data/raw").rglob("*"),
                                          tmp_path / "reports/crawl.json"] if p.is_file()}

    csv_path.write_text("text,language\nA joke,en\n", encoding="utf-8")  # a renamed column
    code, log = _stage(tmp_path)
    assert code == 1, log
    assert "in/jokes.csv line 1: no column 'joke' (source.fields.text)" in log
    assert "data/raw left as it was" in log
    after = {p: p.read_bytes() for p in [*(tmp_path / "data/raw").rglob("*"),
                                         tmp_path / "reports/crawl.json"] if p.is_file()}
    assert after == before
