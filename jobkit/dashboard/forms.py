"""The enqueue form: fields built from a job type's JSON Schema, the submission turned back into arguments.

The form only gathers values; validation is ``perform_later``'s own (``queue.enqueue`` runs the
same schema and payload checks), so the page shows exactly the message enqueueing in code
would raise. Scalars are sent as typed; a field the form cannot render as one input (a list, a
nested model, a union) is a JSON text area.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobkit._payload import json_schema
from jobkit._registry import JobType

#: JSON Schema types rendered as a single input.
SCALARS = {"string", "integer", "number", "boolean"}


@dataclass(frozen=True, slots=True)
class Field:
    """One input of the enqueue form."""

    name: str
    kind: str  # string, integer, number, boolean, secret, choice, json
    required: bool
    default: str
    description: str
    choices: tuple[str, ...] = ()


def _field(name: str, spec: Mapping[str, Any], required: bool, defs: Mapping[str, Any]) -> Field:
    spec = _resolved(spec, defs)
    branches = [b for b in spec.get("anyOf", ()) if b.get("type") != "null"]
    if len(branches) == 1 and len(spec["anyOf"]) == 2:
        # ``X | None``: the input of X; left empty, the field is None (or its default).
        spec = {**spec, **_resolved(branches[0], defs)}
    kind = spec.get("type")
    default = spec.get("default")
    shown = "" if default is None else (json.dumps(default) if not isinstance(default, str) else default)
    description = str(spec.get("description") or "")
    if "enum" in spec and all(isinstance(v, str) for v in spec["enum"]):
        return Field(name, "choice", required, shown, description, tuple(spec["enum"]))
    if kind == "string" and spec.get("format") == "password":
        return Field(name, "secret", required, "", description)
    if kind in SCALARS:
        return Field(name, str(kind), required, shown, description)
    return Field(name, "json", required, shown, description)


def _resolved(spec: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    if "$ref" in spec:
        found: Mapping[str, Any] = defs.get(str(spec["$ref"]).rsplit("/", 1)[-1], spec)
        return found
    return spec


def form_fields(job_type: JobType) -> list[Field]:
    """The inputs for a job type's arguments (none for a type without a schema: it gets a JSON area)."""
    schema = job_type.options.schema
    if schema is None:
        return []
    spec = json_schema(schema)
    required = set(spec.get("required", ()))
    defs = spec.get("$defs", {})
    return [_field(name, sub, name in required, defs) for name, sub in spec.get("properties", {}).items()]


class FormError(ValueError):
    """A field's text cannot be read as the kind of value it stands for (before the schema is asked)."""


def arguments(fields: list[Field], form: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments a submitted form names: empty optional fields left out, for their defaults to apply."""
    if not fields:
        raw = str(form.get("args_json") or "").strip() or "{}"
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise FormError(f"arguments: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise FormError("arguments: a JSON object is needed")
        return value
    args: dict[str, Any] = {}
    for field in fields:
        if field.kind == "boolean":
            args[field.name] = form.get(field.name) == "on"
            continue
        text = form.get(field.name)
        if not isinstance(text, str) or (text == "" and field.kind != "string") or (text == "" and not field.required):
            continue
        if field.kind == "integer":
            args[field.name] = _number(field, text, int)
        elif field.kind == "number":
            args[field.name] = _number(field, text, float)
        elif field.kind == "json":
            try:
                args[field.name] = json.loads(text)
            except ValueError as exc:
                raise FormError(f"{field.name}: not valid JSON ({exc})") from None
        else:
            args[field.name] = text
    return args


def _number(field: Field, text: str, kind: type[int] | type[float]) -> Any:
    # Text that is no number goes to the schema as it is, so its own message names the problem.
    try:
        return kind(text)
    except ValueError:
        return text
