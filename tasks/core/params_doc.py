"""Every key of a params model with its type, default and meaning: `kiln params --schema`.

Read from the pydantic models themselves (tasks/core/params.py and each task type's `params`), so
the listing is the schema `load_params` checks against, not a copy of it. A section is walked
into; the values of a mapping of sections (`crawl.fields`) are listed under `<name>`, the items
of a list of sections under `[]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import UnionType
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class Key:
    key: str  # dotted, as in params.yaml
    type: str
    default: str  # "required" when the key has none
    meaning: str


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model of a section-typed key (`Model` or `Model | None`), else None."""
    if get_origin(annotation) is UnionType:
        models = [a for a in get_args(annotation) if isinstance(a, type)
                  and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and get_origin(annotation) is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("tasks.core.params.", "")


def _shown(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(its keys below)"
    return repr(value)


def keys(model: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None
         ) -> Iterator[Key]:
    """Every key of `model`, depth first in the order the model declares them. `defaults`: the
    section's default instance, whose values can differ from its class's defaults."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        if defaults is not None:
            default: Any = getattr(defaults, name)
        elif field.is_required():
            default = PydanticUndefined
        else:
            default = field.get_default(call_default_factory=True)
        section = _section(field.annotation)
        origin, args = get_origin(field.annotation), get_args(field.annotation)
        shown = "required" if default is PydanticUndefined else _shown(default)
        if section is not None and field.annotation is section:  # a section of params.yaml
            doc = (section.__doc__ or "").strip().split("\n\n")[0]
            yield Key(key, "section", shown, field.description or " ".join(doc.split()))
        else:
            yield Key(key, _type_name(field.annotation), shown, field.description or "")
        if section is not None:
            inner = default if isinstance(default, BaseModel) else None
            yield from keys(section, f"{key}.", inner)
        elif origin is dict and args and (value := _section(args[-1])) is not None:
            yield from keys(value, f"{key}.<name>.")
        elif origin is list and args and (item := _section(args[0])) is not None:
            yield from keys(item, f"{key}[].")


def schema_text(model: type[BaseModel]) -> str:
    """One entry per key: `key: type = default`, then its meaning indented below it."""
    out = []
    for k in keys(model):
        out.append(f"{k.key}: {k.type} = {k.default}")
        if k.meaning:
            out.append(f"    {k.meaning}")
    return "\n".join(out)
