"""`dvc plots show` offline: the page DVC writes (dvc_plots/index.html) loads Vega, Vega-Lite and
Vega-Embed from a CDN; with the template written here it carries them inline instead.

.dvc/config names the template (`plots.html_template`, a path relative to .dvc/); the file itself
is generated into .kiln/ (not versioned: 0.9 MB of minified JavaScript) from the bundle that
vl-convert-python (the Vega project's converter, a pinned dependency) ships in its wheel. `./kiln`
writes it after installing, and `kiln run` and the tests' projects write it where it is missing
or was made by another vl-convert version: `python -m flows.dvc_plots [PROJECT]`.

DVC fills `{plot_divs}` with one div per plot whose inline script calls `vegaEmbed`; this template
has no `{scripts}` placeholder, where DVC would put its CDN script tags.
"""

from __future__ import annotations

import sys
from pathlib import Path

TEMPLATE = Path(".kiln") / "dvc-plots-template.html"  # relative to the project
# The Vega-Lite of DVC's own templates (their "$schema" is vega-lite/v5): its last v5 release
VEGA_LITE = "5.21"

_PAGE = """<!DOCTYPE html>
{stamp}
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <script>
// Vega {vega}, Vega-Lite {vega_lite}, Vega-Embed {embed} (vl-convert-python's bundle), which set
// the globals vega, vegaLite and vegaEmbed. Wrapped in a function so that the bundle's own
// top-level names cannot clash with the `var spec` of DVC's plot scripts.
(function () {{
{bundle}
}})();
    </script>
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def _stamp() -> str:
    from importlib.metadata import version  # noqa: PLC0415

    return f"<!-- kiln dvc plots template, vl-convert-python {version('vl-convert-python')} -->"


def ensure_template(project: Path) -> Path:
    """The template of `project`, written if it is missing or another vl-convert made it."""
    path = project / TEMPLATE
    stamp = _stamp()
    if path.exists():
        with path.open(encoding="utf-8") as f:
            f.readline()  # <!DOCTYPE html>
            if f.readline().strip() == stamp:
                return path
    import vl_convert  # noqa: PLC0415 (1.7 s to bundle: only when the file must be written)

    from tasks.core.io import atomic_path  # noqa: PLC0415

    page = _PAGE.format(stamp=stamp, bundle=vl_convert.javascript_bundle(vl_version=VEGA_LITE),
                        vega=vl_convert.get_vega_version(), vega_lite=VEGA_LITE,
                        embed=vl_convert.get_vega_embed_version())
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path


if __name__ == "__main__":
    print(ensure_template(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
