"""Strict JSON text, the form of everything jobkit stores; standard library only.

Strict means: no NaN or Infinity, string keys only, no lone surrogates, nothing coerced
behind the caller's back (a datetime, set or bytes value is refused, not turned into
something else), within a nesting and a size limit. The same text is stored on SQLite and
PostgreSQL, and nothing is ever pickled, so reading a row can never execute code.

Objects that stand for JSON data (pydantic models) are not known here: a :class:`StrictJSON`
is given a ``json_form`` function that turns them into plain data (``jobkit._payload`` does).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from jobkit.errors import PayloadError

__all__ = ["DEFAULT_BYTES", "DEFAULT_DEPTH", "JsonForm", "StrictJSON", "loads"]

#: The defaults of the ``max_payload_depth`` and ``max_payload_bytes`` settings.
DEFAULT_DEPTH = 64
DEFAULT_BYTES = 16 * 1024 * 1024

#: The plain JSON data an object stands for, or ``NotImplemented`` when it stands for none.
JsonForm = Callable[[Any], Any]


def _no_json_form(value: Any) -> Any:
    return NotImplemented


class _Refused(Exception):
    """A value that is not strict JSON; the path is collected while the check unwinds."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str | int] = []


def _check(value: Any, depth: int, json_form: JsonForm) -> None:
    """Raise _Refused unless ``value`` is strict JSON no deeper than ``depth`` containers."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return
    if kind is float:
        if not math.isfinite(value):
            name = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            raise _Refused(f"{name} is not allowed in JSON")
        return
    if kind is dict:
        if depth <= 0:
            raise _Refused("nested too deep")
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                refused = _Refused(
                    f"key {_short(key)} is {type(key).__name__}: JSON object keys must be strings"
                    " (convert it, and mind that 1 and '1' would collide)"
                )
                raise refused
            try:
                _check(item, depth - 1, json_form)
            except _Refused as exc:
                exc.path.append(key)
                raise
        return
    if kind is list or kind is tuple:
        if depth <= 0:
            raise _Refused("nested too deep")
        for index, item in enumerate(value):
            try:
                _check(item, depth - 1, json_form)
            except _Refused as exc:
                exc.path.append(index)
                raise
        return
    _check_other(value, depth, json_form)


def _check_other(value: Any, depth: int, json_form: JsonForm) -> None:
    # Subclasses of the JSON types (str and int enums) encode as their plain value; an object with
    # a JSON form (a pydantic model) is checked as that form. Anything else would be coerced: refused.
    if isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        _check(float(value), depth, json_form)
        return
    form = json_form(value)
    if form is not NotImplemented:
        _check(form, depth, json_form)
        return
    if isinstance(value, Mapping | list | tuple):
        _check(dict(value) if isinstance(value, Mapping) else list(value), depth, json_form)
        return
    raise _Refused(
        f"{type(value).__name__} is not JSON ({_short(value)}); convert it first "
        "(e.g. a datetime to an ISO string, a set to a list, bytes to base64 text)"
    )


def _make_encoder(default: Callable[[Any], Any]) -> Callable[[Any], str]:
    # json.JSONEncoder.encode builds its C encoder again on every call, which costs more than
    # encoding a small dict; the C encoder is built once here (json.dumps is the fallback).
    # ensure_ascii is off: text is stored as UTF-8 as given, and a lone surrogate cannot hide
    # in an escape; allow_nan is off as a second guard behind _check.
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is not None:
        encode_chunks = c_make_encoder(
            None, default, json.encoder.encode_basestring, None, ":", ",", False, False, False
        )
        return lambda value: "".join(encode_chunks(value, 0))
    encoder = json.JSONEncoder(
        allow_nan=False, ensure_ascii=False, check_circular=False, separators=(",", ":"), default=default
    )
    return encoder.encode


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception:  # a repr that raises must not hide the real problem
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StrictJSON:
    """Dumps values as strict JSON text; ``json_form`` gives the data an object such as a model stands for."""

    __slots__ = ("_encode", "_json_form")

    def __init__(self, json_form: JsonForm = _no_json_form) -> None:
        self._json_form = json_form
        self._encode = _make_encoder(self._encode_default)

    def _encode_default(self, value: Any) -> Any:
        form = self._json_form(value)
        if form is not NotImplemented:
            return form
        if isinstance(value, Mapping):
            return dict(value)
        raise TypeError(f"{type(value).__name__} is not JSON")  # _check has refused it already

    def dumps(self, value: Any, *, max_depth: int = DEFAULT_DEPTH, max_bytes: int = DEFAULT_BYTES) -> str:
        """Dump ``value`` as compact strict JSON, or raise :class:`~jobkit.errors.PayloadError` naming the path.

        Example::

            dumps({"items": [{"price": 1.5}]})          # '{"items":[{"price":1.5}]}'
            dumps({"items": [{"price": float("nan")}]})  # PayloadError: items[0].price: nan is not allowed in JSON
        """
        if value is None:
            return "null"  # the result of most jobs
        try:
            # The nesting limit also ends a cycle: check_circular is off because this check comes first.
            _check(value, max_depth, self._json_form)
        except _Refused as exc:
            exc.path.reverse()
            reason = exc.reason if exc.reason != "nested too deep" else f"nested deeper than {max_depth} levels"
            raise PayloadError(reason, tuple(exc.path)) from None
        try:
            text: str = self._encode(value)
        except (TypeError, ValueError, RecursionError) as exc:  # e.g. an int past Python's digit limit
            raise PayloadError(str(exc)) from None
        if text.isascii():
            size = len(text)
        else:
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:
                raise self._surrogate_error(value) from None
        if size > max_bytes:
            raise PayloadError(f"the JSON text is {size} bytes, more than the limit of {max_bytes} (max_payload_bytes)")
        return text

    def _surrogate_error(self, value: Any) -> PayloadError:
        """Find the string holding a lone surrogate (only on the error path, so this walk costs nothing else)."""
        path: list[str | int] = []

        def bad(text: str) -> bool:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return True
            return False

        def find(item: Any) -> str | None:
            form = self._json_form(item)
            if form is not NotImplemented:
                item = form
            if isinstance(item, str):
                return "string" if bad(item) else None
            if isinstance(item, Mapping):
                for key, inner in item.items():
                    if bad(key):
                        return "key"
                    path.append(key)
                    found = find(inner)
                    if found:
                        return found
                    path.pop()
            elif isinstance(item, list | tuple):
                for index, inner in enumerate(item):
                    path.append(index)
                    found = find(inner)
                    if found:
                        return found
                    path.pop()
            return None

        what = find(value) or "string"
        return PayloadError(f"{what} holds a lone surrogate and is not valid Unicode text", tuple(path))


def _no_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not allowed in JSON")


# Built once, like the encoder; NaN and Infinity literals are refused, not read as floats.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def loads(text: str | None, *, max_depth: int | None = None) -> Any:
    """Load stored JSON text (None stays None); raises :class:`~jobkit.errors.PayloadError` if it cannot.

    Never raises RecursionError: text nested too deep for the parser (or deeper than
    ``max_depth``) is a PayloadError, which is a ValueError.
    """
    if text is None:
        return None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise PayloadError("the stored JSON is nested too deep to read") from None
    except (ValueError, TypeError) as exc:
        if isinstance(exc, PayloadError):
            raise
        raise PayloadError(f"the stored text is not valid JSON: {exc}") from None
    # Counting brackets (C speed) bounds the depth from above, so the walk runs only for deep text.
    if max_depth is not None and text.count("[") + text.count("{") > max_depth and _depth(value) > max_depth:
        raise PayloadError(f"the stored JSON is nested deeper than {max_depth} levels")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        stack.extend((inner, level + 1) for inner in item)
    return deepest
