"""The offline page template of `dvc plots show` (flows/dvc_plots.py)."""

from __future__ import annotations

from pathlib import Path

from dvc_render.html import HTML
from dvc_render.vega import VegaRenderer

from flows.dvc_plots import TEMPLATE, ensure_template


def test_template_carries_vega_inline_and_is_rewritten_after_an_upgrade(tmp_path: Path) -> None:
    path = ensure_template(tmp_path)
    assert path == tmp_path / TEMPLATE
    # what DVC does with it: its CDN script tags go to {scripts}, which the template lacks
    page = HTML(path.read_text(encoding="utf-8")).with_scripts(VegaRenderer.SCRIPTS).embed()
    assert "window.vegaEmbed" in page and "window.vegaLite" in page and "window.vega=" in page
    assert "<script src=" not in page
    mtime = path.stat().st_mtime_ns
    assert ensure_template(tmp_path).stat().st_mtime_ns == mtime  # up to date: left alone
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("vl-convert-python ", "vl-convert-python 0.0.0-old "))
    assert ensure_template(tmp_path).read_text(encoding="utf-8") == text  # another version's
