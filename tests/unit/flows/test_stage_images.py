"""`flows.stage_images.stage_images`: which PNGs of a stage's outputs become Prefect artifacts."""

from __future__ import annotations

from pathlib import Path

from flows.stage_images import stage_images


def test_pngs_of_an_output_folder_and_its_plots(tmp_path: Path) -> None:
    evaluation = tmp_path / "reports" / "evaluation"
    (evaluation / "plots").mkdir(parents=True)
    (evaluation / "deeper" / "plots").mkdir(parents=True)
    for name in (
        "plots/b.png",
        "plots/a.png",
        "top.png",
        "plots/predictions.csv",
        "deeper/plots/no.png",
    ):
        (evaluation / name).write_bytes(b"")
    (tmp_path / "reports" / "single.png").write_bytes(b"")
    spec = {
        "outs": [
            {"reports/evaluation": {"persist": True}},
            "reports/single.png",
            "reports/missing.png",
        ]
    }
    assert [p.relative_to(tmp_path).as_posix() for p in stage_images(spec, tmp_path)] == [
        "reports/evaluation/top.png",  # directly in the folder, then in its plots/, by name
        "reports/evaluation/plots/a.png",
        "reports/evaluation/plots/b.png",
        "reports/single.png",
    ]
