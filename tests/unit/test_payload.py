"""Strict JSON payloads, secrets and the limits shared with the schema."""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, Secret, SecretBytes, SecretStr

from jobkit import PayloadError, Snooze
from jobkit._payload import MASK, args_model, dumps, has_secrets, loads, redact, to_json_args
from jobkit._registry import INT32_MAX, INT32_MIN, MAX_NAME, MAX_QUEUE
from jobkit._store import schema


def test_name_limits_equal_the_schema_columns() -> None:
    """The name and queue limits checked before enqueue are the columns' own lengths."""
    assert schema.jobs.c.name.type.length == MAX_NAME
    assert schema.jobs.c.queue.type.length == MAX_QUEUE
    assert schema.queue_pauses.c.queue.type.length == MAX_QUEUE
    assert (INT32_MIN, INT32_MAX) == (-(2**31), 2**31 - 1)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"items": [{"price": 1}, {"price": math.nan}]}, "items[1].price: NaN is not allowed in JSON"),
        ([math.inf], "[0]: Infinity is not allowed in JSON"),
        ({1: "a", "1": "b"}, "key 1 is int: JSON object keys must be strings"),
        ({"a b": {None: 1}}, "['a b']: key None is NoneType"),
        ({"s": {1}}, "s: set is not JSON"),
        ({"b": bytearray(b"x")}, "b: bytearray is not JSON"),
        ({"t": timedelta(1)}, "t: timedelta is not JSON"),
        ({"x": "ok\ud800"}, "x: string holds a lone surrogate"),
        ({"\udfff": 1}, "key holds a lone surrogate"),
    ],
)
def test_dumps_refuses_what_is_not_strict_json_naming_the_path(value: Any, message: str) -> None:
    """Each non-JSON value raises PayloadError (a ValueError) whose message names where it is."""
    with pytest.raises(PayloadError) as raised:
        dumps(value)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_dumps_keeps_valid_text_as_given() -> None:
    """Valid text is stored as UTF-8, unescaped; tuples become lists; str subclasses their value."""
    assert dumps({"e": "é😀\t\x00", "t": (1, 2.5, None, True)}) == '{"e":"é😀\\t\\u0000","t":[1,2.5,null,true]}'
    assert loads(dumps({"e": "é😀"})) == {"e": "é😀"}


def test_depth_and_size_limits() -> None:
    """Nesting past max_depth (cycles included) and text past max_bytes are refused."""
    assert dumps([[[]]], max_depth=3) == "[[[]]]"
    with pytest.raises(PayloadError, match=r"\[0\]\[0\]: nested deeper than 2 levels"):
        dumps([[[]]], max_depth=2)
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(PayloadError, match="nested deeper than 64 levels"):
        dumps(cycle)
    assert dumps("é" * 10, max_bytes=22) == '"' + "é" * 10 + '"'
    # Bytes of UTF-8 are counted, not characters: 10 characters here are 22 bytes.
    with pytest.raises(PayloadError, match="the JSON text is 22 bytes, more than the limit of 21"):
        dumps("é" * 10, max_bytes=21)


def test_loads_never_raises_recursion_error() -> None:
    """Text nested far too deep is a PayloadError, even in a thread with little stack left."""
    deep = "[" * 100_000 + "]" * 100_000
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            loads(deep)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], PayloadError), outcome
    with pytest.raises(PayloadError, match="not valid JSON"):
        loads("{bad")
    with pytest.raises(PayloadError, match="NaN is not allowed"):
        loads('{"x": NaN}')
    with pytest.raises(PayloadError, match="nested deeper than 3"):
        loads("[[[[]]]]", max_depth=3)
    assert loads("[[[]]]", max_depth=3) == [[[]]]
    assert loads(None) is None


class Inner(BaseModel):
    key: SecretBytes
    note: str = ""


class WithSecrets(BaseModel):
    token: SecretStr
    maybe: SecretStr | None = None
    inner: list[Inner] = []
    by_name: dict[str, SecretStr] = {}
    pin: Secret[int] | None = None
    plain: str = "p"
    aliased: SecretStr | None = Field(default=None, alias="apiKey")


def test_secrets_are_stored_as_given_and_redacted_for_reading() -> None:
    """Every kind of secret field is dumped with its real value; redact masks exactly those fields."""
    args = {
        "token": "t",
        "maybe": "m",
        "inner": [{"key": "k", "note": "n"}],
        "by_name": {"a": "s"},
        "pin": 1234,
        "apiKey": "ak",
    }
    stored = loads(to_json_args(args_model(WithSecrets, "forbid"), args))
    assert stored == {**args, "plain": "p"}
    assert WithSecrets.model_validate(stored).token.get_secret_value() == "t"
    assert redact(stored, WithSecrets) == {
        "token": MASK,
        "maybe": MASK,
        "inner": [{"key": MASK, "note": "n"}],
        "by_name": {"a": MASK},
        "pin": MASK,
        "apiKey": MASK,
        "plain": "p",
    }
    assert stored["token"] == "t"  # redact copies, it does not change what it is given
    assert redact({"x": 1}, None) == {"x": 1}
    assert has_secrets(WithSecrets) and has_secrets(Inner) and not has_secrets(BaseModel)


class Point(BaseModel):
    x: int
    label: str = ""


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    x: int


def test_args_model_forbids_unknown_keywords_without_touching_the_schema() -> None:
    """The derived model refuses extras; the user's class, and models that allow extras, are unchanged."""
    strict = args_model(Point, "forbid")
    assert strict is not Point and strict.__name__ == "Point"
    assert Point.model_config.get("extra") is None
    assert Point.model_validate({"x": 1, "y": 2}).x == 1
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        strict.model_validate({"x": 1, "y": 2})
    assert args_model(Point, "ignore") is Point
    assert args_model(Loose, "forbid") is Loose
    assert loads(to_json_args(Loose, {"x": 1, "y": 2})) == {"x": 1, "y": 2}


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -math.inf, -1, 1e13, 10**400, True, "5"])
def test_snooze_refuses_delays_that_cannot_be_stored(seconds: Any) -> None:
    """Snooze takes 0 to about 100 years; anything else is a ValueError naming the value."""
    with pytest.raises(ValueError, match="Snooze") as raised:
        Snooze(seconds)
    assert repr(seconds)[:20] in str(raised.value)


def test_snooze_accepts_numbers_and_timedeltas() -> None:
    """Plain seconds and timedeltas both work."""
    assert Snooze(30).seconds == 30.0
    assert Snooze(timedelta(minutes=2)).seconds == 120.0
    assert str(Snooze(30)) == "snoozed for 30s"


def test_payload_error_where_renders_paths() -> None:
    """Paths read like Python: keys with dots, indexes and odd keys in brackets, long ones cut."""
    assert PayloadError("bad", ("items", 3, "price")).where() == "items[3].price"
    assert PayloadError("bad", (0, "a b")).where("result") == "result[0]['a b']"
    assert PayloadError("bad", tuple(range(20))).where() == "[0][1][2][3][4][5]..."
    assert str(PayloadError("bad")) == "bad"


class Measured(BaseModel):
    x: float
    label: str | None = None
    values: list[float] = []


class MeasuredAsText(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings")
    x: float


class MeasuredAsConstants(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="constants")
    x: float


@pytest.mark.parametrize(
    ("model", "args", "message"),
    [
        (Measured, {"x": math.nan}, "x: NaN is not allowed"),
        (Measured, {"x": 1, "values": [1.0, "-inf"]}, "values[1]: -Infinity is not allowed"),
        (MeasuredAsConstants, {"x": "inf"}, "x: Infinity is not allowed"),
        (MeasuredAsText, {"x": math.nan}, "x: NaN is not allowed"),  # whatever the model's JSON config
    ],
)
def test_schema_floats_never_become_null(model: type[BaseModel], args: dict[str, Any], message: str) -> None:
    """A NaN or infinite float in a schema is refused naming the field, never stored as null."""
    with pytest.raises(PayloadError, match=message.replace("[", r"\[").replace("]", r"\]")):
        to_json_args(model, args)


def test_schema_floats_and_nulls_that_are_valid_are_stored() -> None:
    """Finite floats and real None values are stored as pydantic dumps them."""
    assert to_json_args(Measured, {"x": 1.5, "values": [2]}) == '{"x":1.5,"label":null,"values":[2.0]}'
    assert to_json_args(Measured, {"x": 1.5, "label": "null NaN"}) == '{"x":1.5,"label":"null NaN","values":[]}'
    assert to_json_args(MeasuredAsText, {"x": 2}) == '{"x":2.0}'
