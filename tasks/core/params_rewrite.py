"""Does a params file survive `dvc exp run -S key=value`?

`-S` makes DVC rewrite the whole params file with ruamel.yaml's round-trip dumper (through Hydra
and OmegaConf): lists come back in block style, mappings keep their style, and every string loses
its quotes where YAML 1.2 lets it stand unquoted. Two things can then break:

* DVC reads the file back with ruamel's libyaml-based C parser (ruamel.yaml.clib), whose scanner
  rejects a `:` inside an unquoted scalar of a flow mapping: `{css: "dd.writer::text"}` is written
  back as `{css: dd.writer::text}` and DVC fails with "YAML file structure is corrupted".
  The shipped params files write such mappings in block style (`css: "..."` on its own line).
* The stages read params with PyYAML, which follows YAML 1.1: a class written `"no"` comes back
  as `no`, which YAML 1.1 reads as false.

`rewrite_problem(path)` does DVC's own rewrite to a copy and reads it back both ways; `kiln check`
refuses a file it would break, naming the line or key.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from tasks.core.params import ParamsError, read_params_file


def _first_difference(before: Any, after: Any, where: str = "") -> str | None:
    """The dotted path of the first value that differs (None: equal)."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in before.keys() | after.keys():
            path = f"{where}.{key}" if where else str(key)
            if key not in before or key not in after:
                return path
            if (found := _first_difference(before[key], after[key], path)) is not None:
                return found
        return None
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            if (found := _first_difference(b, a, f"{where}[{i}]")) is not None:
                return found
        return None
    return None if before == after and type(before) is type(after) else where


def rewrite_problem(path: Path | str) -> str | None:
    """What goes wrong when DVC rewrites `path` for `dvc exp run -S` (None: nothing)."""
    from dvc.utils.hydra import apply_overrides  # noqa: PLC0415 (DVC: ~0.1 s, only when checking)
    from dvc.utils.serialize import ParseError, load_yaml  # noqa: PLC0415

    path = Path(path)
    original = read_params_file(path)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "params.yaml"
        shutil.copyfile(path, copy)
        apply_overrides(copy, [])  # what `-S` does, less the new value: the file is re-dumped
        rewritten = copy.read_text(encoding="utf-8")
        try:
            load_yaml(copy)
        except ParseError as exc:
            cause = exc.__cause__
            mark = getattr(cause, "problem_mark", None)
            line = rewritten.splitlines()[mark.line].strip() if mark is not None else "?"
            return (
                f"{path.name}: after `dvc exp run -S` rewrites it, DVC cannot read it "
                f"({getattr(cause, 'problem', cause)} in `{line}`): a string with ':' in a "
                "{flow: mapping} loses its quotes; write that mapping in block style, one key "
                "per line"
            )
        try:
            after = read_params_file(copy)
        except ParamsError as exc:
            return f"{path.name}: after `dvc exp run -S` rewrites it: {exc}"
    if (key := _first_difference(original, after)) is not None:
        return (
            f"{path.name}: `dvc exp run -S` would change '{key}' (DVC writes YAML 1.2, the stages "
            "read YAML 1.1: yes/no/on/off unquoted are booleans there, 12:30 a number); write "
            "that value so both read it alike (true/false for a boolean, another spelling for "
            "a string)"
        )
    return None


def set_values(path: Path | str, values: dict[str, Any]) -> None:
    """Write `values` ({dotted key: value}) into the params file as `dvc exp run -S` does (DVC's
    own rewrite: comments and mapping styles kept), atomically."""
    import json  # noqa: PLC0415

    from dvc.utils.hydra import apply_overrides  # noqa: PLC0415

    from tasks.core.io import atomic_path  # noqa: PLC0415

    path = Path(path)
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        # JSON values are valid Hydra override values (strings quoted, lists bracketed)
        apply_overrides(tmp, [f"{key}={json.dumps(value)}" for key, value in values.items()])
