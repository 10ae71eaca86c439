"""The only pydantic import outside settings: validate, dump and load job payloads.

Everything stored is JSON text; nothing is ever pickled, so reading a row can
never execute code.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

__all__ = ["BaseModel", "ValidationError", "dumps", "is_model_class", "loads", "to_json_args", "validate"]


def is_model_class(value: object) -> bool:
    """True when ``value`` is a pydantic model class."""
    return isinstance(value, type) and issubclass(value, BaseModel)


def validate(schema: type[BaseModel] | None, args: dict[str, Any]) -> BaseModel | dict[str, Any]:
    """Validate ``args`` against ``schema``; raises pydantic's ValidationError."""
    if schema is None:
        return dict(args)
    return schema.model_validate(args)


def to_json_args(schema: type[BaseModel] | None, args: dict[str, Any]) -> str:
    """Validate ``args`` then dump them as the JSON text that is stored."""
    model = validate(schema, args)
    if isinstance(model, BaseModel):
        return model.model_dump_json()
    return dumps(model)


# Built once: json.dumps with any keyword argument builds a new encoder on every call.
_ENCODER = json.JSONEncoder(default=to_jsonable_python, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Dump any JSON-able value (pydantic models, datetimes included) to compact JSON."""
    if value is None:
        return "null"  # the result of most jobs
    return _ENCODER.encode(value)


def loads(text: str | None) -> Any:
    """Load JSON text stored by :func:`dumps` (None stays None)."""
    return None if text is None else json.loads(text)
