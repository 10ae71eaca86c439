"""The only pydantic import outside settings: validate, dump and load job payloads.

Job arguments are validated against the job's schema and stored as strict JSON text
(``jobkit._json`` owns what "strict" means, and the limits); a model anywhere in a value is
dumped by alias with its secrets as given, and :func:`redact` masks those secrets wherever
people read arguments. ``dumps`` and ``loads`` here are the strict codec that knows models.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping, Sequence, Set
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel, ConfigDict, PlainSerializer, ValidationError, WrapSerializer
from pydantic.types import _SecretBase
from pydantic_core import to_jsonable_python

from jobkit._json import DEFAULT_BYTES, DEFAULT_DEPTH, StrictJSON, loads

__all__ = [
    "DEFAULT_BYTES",
    "DEFAULT_DEPTH",
    "MASK",
    "BaseModel",
    "ExtraArgs",
    "ValidationError",
    "args_model",
    "dumps",
    "has_secrets",
    "is_model_class",
    "json_schema",
    "loads",
    "redact",
    "stored_keys",
    "to_json_args",
    "validate",
]

#: What a secret is shown as where people read arguments.
MASK = "**********"

ExtraArgs = Literal["forbid", "ignore"]


def is_model_class(value: object) -> bool:
    """True when ``value`` is a pydantic model class."""
    return isinstance(value, type) and issubclass(value, BaseModel)


# -- schemas -------------------------------------------------------------------------------------


def stored_keys(schema: type[BaseModel]) -> dict[str, str]:
    """Each field of ``schema`` and the key it is stored under (its alias, as the stored JSON is dumped by alias)."""
    return {name: info.serialization_alias or info.alias or name for name, info in schema.model_fields.items()}


def args_model(schema: type[BaseModel], extra_args: ExtraArgs) -> type[BaseModel]:
    """The model enqueue validates with: ``schema`` itself, or a subclass refusing unknown keywords.

    The user's class is never changed: a derived class carries ``extra="forbid"`` (pydantic merges
    it with the parent's config, so aliases, validators and the rest behave the same). A model that
    says ``extra="allow"`` keeps its extras, and ``extra_args="ignore"`` keeps pydantic's default.
    """
    if extra_args == "ignore" or schema.model_config.get("extra") in ("allow", "forbid"):
        return schema
    namespace = {
        "__module__": schema.__module__,
        "__qualname__": schema.__qualname__,
        "__doc__": schema.__doc__,
        "model_config": ConfigDict(extra="forbid"),
    }
    metaclass: Any = type(schema)  # pydantic's ModelMetaclass builds the subclass like a class statement
    derived: type[BaseModel] = metaclass(schema.__name__, (schema,), namespace)
    return derived


def json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a job's argument model (what ``jobkit types --json`` shows)."""
    return schema.model_json_schema()


def validation_problems(exc: BaseException) -> str | None:
    """A pydantic ValidationError in one line, each problem led by its argument's path; None for anything else.

    Example: ``argument n: Input should be a valid integer; argument items.2.sku: Field required``.
    """
    if not isinstance(exc, ValidationError):
        return None
    return "; ".join(
        f"argument {'.'.join(str(p) for p in err['loc']) or '(all)'}: {err['msg']}" for err in exc.errors()
    )


def at_item(exc: Exception, index: int, title: str) -> Exception:
    """A ValidationError of one item of a bulk enqueue, each problem's path led by the item's index.

    ``perform_all_later([...])`` then says ``1 validation error for send_email (item 3)`` and
    ``3.to``: which row, and which argument in it. Anything else is returned unchanged.
    """
    if not isinstance(exc, ValidationError):
        return exc
    details: list[Any] = []
    for err in exc.errors():
        detail: dict[str, Any] = {"type": err["type"], "loc": (index, *err["loc"]), "input": err["input"]}
        if "ctx" in err:
            detail["ctx"] = err["ctx"]
        details.append(detail)
    try:
        return ValidationError.from_exception_data(f"{title} (item {index})", details)
    except Exception:  # an error type pydantic cannot rebuild (a custom one): keep it, add the index
        exc.add_note(f"in item {index} of the bulk enqueue")
        return exc


def validate(schema: type[BaseModel] | None, args: dict[str, Any]) -> BaseModel | dict[str, Any]:
    """Validate ``args`` against ``schema``; raises pydantic's ValidationError."""
    if schema is None:
        return dict(args)
    return schema.model_validate(args)


def to_json_args(
    schema: type[BaseModel] | None,
    args: dict[str, Any],
    *,
    max_depth: int = DEFAULT_DEPTH,
    max_bytes: int = DEFAULT_BYTES,
) -> str:
    """Validate ``args`` then dump them as the strict JSON text that is stored (secrets as given)."""
    if schema is None:
        return dumps(args, max_depth=max_depth, max_bytes=max_bytes)
    model = schema.model_validate(args)
    plain = _plain_schema(schema)
    if plain is not None and plain[0] <= max_depth:
        # Fast path: this schema cannot dump a non-string key or a secret, so pydantic's own JSON
        # is strict already, but for one thing: pydantic writes a NaN or infinite float as null.
        # A schema with floats therefore takes it only when no null, NaN or Infinity appears in the
        # text at all (a byte search); anything else takes the slow path below, for a clear error.
        try:
            data = schema.__pydantic_serializer__.to_json(model, by_alias=True)
        except Exception:  # a lone surrogate, mostly: the slow path names the argument
            pass
        else:
            floats_safe = not plain[1] or not (b"null" in data or b"NaN" in data or b"Infinity" in data)
            if floats_safe and len(data) <= max_bytes:
                return data.decode("utf-8")
    return dumps(_model_json(model), max_depth=max_depth, max_bytes=max_bytes)


# Leaf types whose JSON form is a string, a bool, null or a number, never a container.
_PLAIN_LEAVES = (str, int, float, type(None), datetime, date, time, timedelta, UUID, Decimal)


@functools.cache
def _plain_schema(schema: type[BaseModel]) -> tuple[int, bool] | None:
    """(the deepest nesting ``schema`` can dump to, whether it has floats), or None when its JSON
    always needs the strict check.

    Computed once per schema. Secrets, ``Any``, custom serializers, extras and anything unknown
    make a schema need the check; so does a model that contains itself.
    """
    floats: list[type] = []
    depth = _type_depth(schema, frozenset(), floats)
    return None if depth is None else (depth, bool(floats))


def _type_depth(annotation: Any, seen: frozenset[type], floats: list[type]) -> int | None:
    if is_model_class(annotation):
        if annotation in seen or annotation.model_config.get("extra") == "allow":
            return None
        decorators = annotation.__pydantic_decorators__
        if decorators.field_serializers or decorators.model_serializers or decorators.computed_fields:
            return None
        depths = [_type_depth(f.annotation, seen | {annotation}, floats) for f in annotation.model_fields.values()]
        if any(d is None for d in depths):
            return None
        return 1 + max((d for d in depths if d is not None), default=0)
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return 0 if issubclass(annotation, str | int) else None
        if issubclass(annotation, float):
            floats.append(annotation)
        return 0 if issubclass(annotation, _PLAIN_LEAVES) else None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        if any(isinstance(m, PlainSerializer | WrapSerializer) for m in annotation.__metadata__):
            return None
        return _type_depth(annotation.__origin__, seen, floats)
    if origin is Literal:
        return 0 if all(v is None or isinstance(v, str | int) for v in args) else None
    if origin is typing.Union or origin is types.UnionType:
        depths = [_type_depth(a, seen, floats) for a in args]
        return None if any(d is None for d in depths) else max(d for d in depths if d is not None)
    if origin in (list, tuple, set, frozenset, Sequence, Set) and args:
        depths = [_type_depth(a, seen, floats) for a in args if a is not Ellipsis]
        return None if any(d is None for d in depths) else 1 + max(d for d in depths if d is not None)
    if origin in (dict, Mapping) and len(args) == 2 and args[0] is str:
        inner = _type_depth(args[1], seen, floats)
        return None if inner is None else 1 + inner
    return None


def _model_json(model: BaseModel) -> Any:
    # By alias: a model whose fields have aliases validates by alias by default, so this is the
    # form the worker can read back. JSON mode masks secrets; they are put back from the instance.
    dumped = model.model_dump(mode="json", by_alias=True)
    if has_secrets(type(model)):
        dumped = _reveal(model, dumped)
    return dumped


def _json_form(value: Any) -> Any:
    """The data a model stands for, for the strict codec; NotImplemented for anything else."""
    return _model_json(value) if isinstance(value, BaseModel) else NotImplemented


_JSON = StrictJSON(_json_form)
#: Strict JSON text of a value that may hold models (see :meth:`jobkit._json.StrictJSON.dumps`).
dumps = _JSON.dumps


def _secret_json(secret: _SecretBase[Any]) -> Any:
    value = secret.get_secret_value()
    if isinstance(value, bytes):
        return value.decode("utf-8")  # how SecretBytes is validated from JSON text
    return to_jsonable_python(value)


def _reveal(value: Any, dumped: Any) -> Any:
    """``dumped`` (JSON mode) with every masked secret replaced by the instance's real value."""
    if isinstance(value, _SecretBase):
        return _secret_json(value)
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        for name, info in type(value).model_fields.items():
            key = info.serialization_alias or info.alias or name
            if key in dumped:
                dumped[key] = _reveal(getattr(value, name, None), dumped[key])
        return dumped
    if isinstance(value, list | tuple) and isinstance(dumped, list) and len(value) == len(dumped):
        return [_reveal(v, d) for v, d in zip(value, dumped, strict=True)]
    if isinstance(value, Mapping) and isinstance(dumped, dict):
        for key, item in value.items():
            text = key if isinstance(key, str) else str(key)
            if text in dumped:
                dumped[text] = _reveal(item, dumped[text])
        return dumped
    return dumped


def _annotation_args(annotation: Any) -> tuple[Any, ...]:
    # Annotated[T, ...] -> (T,); list[T] -> (T,); dict[K, V] -> (K, V); T | None -> (T, None) ...
    if get_origin(annotation) is typing.Annotated:
        return (annotation.__origin__,)
    return get_args(annotation)


def _is_secret_type(annotation: Any) -> bool:
    target = get_origin(annotation) or annotation
    return isinstance(target, type) and issubclass(target, _SecretBase)


def has_secrets(schema: type[BaseModel]) -> bool:
    """True when ``schema`` has a secret field (``SecretStr``, ``SecretBytes``, ``Secret[T]``) anywhere."""
    if schema is not BaseModel and not schema.__pydantic_complete__:
        # Forward references not resolved yet: resolve them now, and never cache a guess made
        # from unresolved annotations (it would leave a secret unmasked for good).
        try:
            schema.model_rebuild(raise_errors=False)
        except Exception:  # a schema pydantic cannot build: judged uncached below
            pass
        if not schema.__pydantic_complete__:
            return _has_secret(schema, set())
    return _cached_has_secrets(schema)


@functools.cache
def _cached_has_secrets(schema: type[BaseModel]) -> bool:
    return _has_secret(schema, set())


def _has_secret(annotation: Any, seen: set[int]) -> bool:
    if _is_secret_type(annotation):
        return True
    if isinstance(annotation, str | typing.ForwardRef):
        return True  # unresolved: assume a secret may hide there (masking too much is the safe side)
    if is_model_class(annotation):
        if id(annotation) in seen:
            return False
        seen.add(id(annotation))
        return any(_has_secret(f.annotation, seen) for f in annotation.model_fields.values())
    return any(_has_secret(arg, seen) for arg in _annotation_args(annotation))


def redact(args: Any, schema: type[BaseModel] | None) -> Any:
    """Stored ``args`` with every secret field of ``schema`` shown as ``MASK``; for the CLI, logs and views.

    The arguments are not changed; a copy is returned when there is anything to mask.

    Example::

        redact({"to": "a@b.c", "token": "s3cret"}, EmailArgs)   # {"to": "a@b.c", "token": "**********"}
    """
    if schema is None or not has_secrets(schema):
        return args
    return _redact(args, schema)


def _redact(value: Any, annotation: Any) -> Any:
    if value is None:
        return None
    if _is_secret_type(annotation):
        return MASK
    if is_model_class(annotation):
        if not isinstance(value, dict):
            return value
        masked = dict(value)
        for name, info in annotation.model_fields.items():
            for key in {name, info.alias, info.serialization_alias} - {None}:
                if key in masked:
                    masked[key] = _redact(masked[key], info.annotation)
        return masked
    args = _annotation_args(annotation)
    if not args:
        return value
    origin = get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        # A value that may be a secret is masked; otherwise the first model it may be decides.
        if any(_is_secret_type(a) for a in args):
            return MASK
        for arg in args:
            if is_model_class(arg) and isinstance(value, dict):
                return _redact(value, arg)
        return value
    if isinstance(value, dict) and len(args) == 2:
        return {k: _redact(v, args[1]) for k, v in value.items()}
    if isinstance(value, list):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return [_redact(v, a) for v, a in zip(value, args, strict=False)] + value[len(args) :]
        return [_redact(v, args[0]) for v in value]
    return _redact(value, args[0]) if origin is typing.Annotated else value
