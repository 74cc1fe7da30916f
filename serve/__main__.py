"""Serve the champion over HTTP: `python -m serve [--project DIR] [--host H] [--port P]`.

The entry point of a serving host that has only the `serve` extra (no torch, no Prefect): reads
the `serve` section of DIR/params.yaml (defaults when the file is absent) and the registry in
DIR/registry, then runs uvicorn. `kiln serve` does the same from the kiln command line.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import yaml
from pydantic import ValidationError

from tasks.core.params import ParamsError, ServeParams
from tasks.core.registry import REGISTRY_DIR


def serve_params(project: Path, **overrides: object) -> ServeParams:
    """params.yaml's `serve` section (defaults when absent), with non-None overrides applied.

    Only that section is read: a serving host need not have what other sections check against
    (e.g. Great Expectations for `validate.expectations`). Unknown keys in it still fail.
    """
    path = project / "params.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    section = (raw or {}).get("serve") or {}
    changes = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ServeParams.model_validate({**section, **changes})
    except ValidationError as exc:
        raise ParamsError(f"{path} serve section is invalid: {exc}") from None


def run_server(project: Path, settings: ServeParams) -> None:
    import uvicorn  # noqa: PLC0415

    from serve.app import create_app  # noqa: PLC0415

    app = create_app(project / REGISTRY_DIR, settings)
    logging.getLogger("kiln.serve").info(
        "serving %s on http://%s:%d (docs at /docs)",
        app.state.models.current.version,
        settings.host,
        settings.port,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--backend", choices=["onnx", "torch"])
    parser.add_argument("--reload-interval-s", type=float)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = serve_params(
        args.project,
        host=args.host,
        port=args.port,
        backend=args.backend,
        reload_interval_s=args.reload_interval_s,
    )
    run_server(args.project, settings)


if __name__ == "__main__":
    main()
