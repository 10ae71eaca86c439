"""The input matrix: every odd input is refused (nothing stored) or stored and read back exactly, the same on both DBs."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest
import sqlalchemy as sa
from pydantic import BaseModel, Field, SecretStr

from jobkit import BaseJob, EnqueueError, JobDefinitionError, JobFailed, JobQueue, Snooze, job
from jobkit._payload import redact

# Text that is awkward but valid everywhere: quotes, backslashes, accents, emoji (outside the BMP),
# CJK, a tab, a line separator and Rich-markup look-alikes.
AWKWARD = 'ü "q" \\ back \' é 😀 \t 中文 \u2028 [/] {x} %s'
LONG_QUEUE = (AWKWARD * 10)[:100]
LONG_NAME = ("matrix." + AWKWARD * 20)[:200]


class Item(BaseModel):
    price: float


class Order(BaseModel):
    to: str
    items: list[Item] = []
    token: SecretStr | None = None
    sender: str = Field(default="me", alias="from")


def _order_result(args: Order) -> dict[str, Any]:
    token = None if args.token is None else args.token.get_secret_value()
    return {"to": args.to, "token": token, "from": args.sender, "prices": [i.price for i in args.items]}


@job(name="matrix.order", schema=Order, max_retries=0)
class PlaceOrder(BaseJob[Order]):
    def perform(self, args: Order) -> dict[str, Any]:
        return _order_result(args)


@job(name="matrix.lenient", schema=Order, max_retries=0, extra_args="ignore")
class LenientOrder(BaseJob[Order]):
    def perform(self, args: Order) -> dict[str, Any]:
        return _order_result(args)


@job(name="matrix.echo", max_retries=0)
class Echo(BaseJob[dict[str, Any]]):
    def perform(self, args: dict[str, Any]) -> dict[str, Any]:
        return args


@job(name=LONG_NAME, queue=LONG_QUEUE, max_retries=0)
class Awkward(BaseJob[dict[str, Any]]):
    def perform(self, args: dict[str, Any]) -> dict[str, Any]:
        return args


def rows(queue: JobQueue) -> list[dict[str, Any]]:
    """Every stored job row, read with plain SQL (what the database really holds)."""
    engine = sa.create_engine(queue.settings.database_url)
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text("SELECT name, queue, priority, args, run_at FROM jobkit_jobs ORDER BY id"))
            return [dict(r._mapping) for r in result]
    finally:
        engine.dispose()


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


class Opaque:
    pass


FAR_EAST = timezone(timedelta(hours=-5))

# (id, the enqueue call, the exception, a fragment its message must hold)
REFUSED: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("queue too long", lambda: Echo.set(queue="q" * 101).perform_later(), EnqueueError, "at most 100"),
    ("queue with NUL", lambda: Echo.set(queue="q\x00x").perform_later(), EnqueueError, "NUL"),
    ("queue surrogate", lambda: Echo.set(queue="q\ud800").perform_later(), EnqueueError, "surrogate"),
    ("queue surrogate bulk", lambda: Echo.set(queue="q\ud800").perform_all_later([{}, {}]), EnqueueError, "surrogate"),
    ("queue NUL bulk", lambda: Echo.set(queue="a\x00").perform_all_later([{}, {}]), EnqueueError, "NUL"),
    ("queue blank", lambda: Echo.set(queue="  ").perform_later(), EnqueueError, "non-empty"),
    ("priority 2**40", lambda: Echo.set(priority=2**40).perform_later(), EnqueueError, "priority must be between"),
    ("priority 2**70", lambda: Echo.set(priority=2**70).perform_later(), EnqueueError, "priority must be between"),
    ("priority below", lambda: Echo.set(priority=-(2**31) - 1).perform_later(), EnqueueError, "priority"),
    ("priority bool", lambda: Echo.set(priority=True).perform_later(), EnqueueError, "priority must be an int"),
    ("unknown keyword", lambda: PlaceOrder.perform_later(to="a", too="typo"), pydantic.ValidationError, "too"),
    (
        "unknown keyword bulk",
        lambda: PlaceOrder.perform_all_later([{"to": "a"}, {"to": "b", "itmes": []}]),
        pydantic.ValidationError,
        "itmes",
    ),
    (
        "schema NaN",
        lambda: PlaceOrder.perform_later(to="a", items=[{"price": 1}, {"price": math.nan}]),
        EnqueueError,
        "matrix.order: argument items[1].price: NaN is not allowed in JSON",
    ),
    (
        "schema inf bulk",
        lambda: PlaceOrder.perform_all_later([{"to": "a"}, {"to": "b", "items": [{"price": "inf"}]}]),
        EnqueueError,
        "matrix.order: item 1: argument items[0].price: Infinity is not allowed",
    ),
    ("NaN", lambda: Echo.perform_later(x=math.nan), EnqueueError, "matrix.echo: argument x: NaN"),
    ("-inf", lambda: Echo.perform_later(x=[-math.inf]), EnqueueError, "argument x[0]: -Infinity"),
    ("colliding keys", lambda: Echo.perform_later(d={1: "a", "1": "b"}), EnqueueError, "argument d: key 1 is int"),
    ("int key", lambda: Echo.perform_later(d={"ok": {2: "b"}}), EnqueueError, "argument d.ok: key 2 is int"),
    ("datetime", lambda: Echo.perform_later(when=datetime.now(UTC)), EnqueueError, "argument when: datetime is not"),
    ("set", lambda: Echo.perform_later(tags={"a"}), EnqueueError, "argument tags: set is not JSON"),
    ("bytes", lambda: Echo.perform_later(blob=b"x"), EnqueueError, "argument blob: bytes is not JSON"),
    ("object", lambda: Echo.perform_later(thing=Opaque()), EnqueueError, "argument thing: Opaque is not JSON"),
    ("surrogate arg", lambda: Echo.perform_later(s=["ok", "a\udc00"]), EnqueueError, "argument s[1]: string holds"),
    ("surrogate schema arg", lambda: PlaceOrder.perform_later(to="a\ud800"), EnqueueError, "argument to: string"),
    ("nested 989", lambda: Echo.perform_later(deep=nested(989)), EnqueueError, "nested deeper than 64 levels"),
    ("nested 65", lambda: Echo.perform_later(deep=nested(64)), EnqueueError, "nested deeper than 64 levels"),
    ("too big", lambda: Echo.perform_later(s="x" * (16 * 1024 * 1024)), EnqueueError, "max_payload_bytes"),
    ("perform_in 1e13", lambda: Echo.perform_in(1e13), EnqueueError, "about 100 years"),
    ("perform_in nan", lambda: Echo.perform_in(math.nan), EnqueueError, "finite"),
    ("perform_in inf", lambda: Echo.perform_in(math.inf), EnqueueError, "finite"),
    ("perform_in negative", lambda: Echo.perform_in(-1), EnqueueError, "not negative"),
    ("perform_in 10**400", lambda: Echo.perform_in(10**400), EnqueueError, "finite"),
    ("wait 1e13", lambda: Echo.set(wait=1e13).perform_later(), EnqueueError, "about 100 years"),
    ("wait str", lambda: Echo.set(wait="5").perform_later(), EnqueueError, "timedelta or seconds"),
    ("perform_at year 1", lambda: Echo.perform_at(datetime(1, 1, 2, tzinfo=UTC)), EnqueueError, "1970 to 9999"),
    ("perform_at 1969", lambda: Echo.perform_at(datetime(1969, 12, 31, tzinfo=UTC)), EnqueueError, "1970 to 9999"),
    (
        "perform_at past 9999",
        lambda: Echo.perform_at(datetime(9999, 12, 31, 23, 59, tzinfo=FAR_EAST)),
        EnqueueError,
        "1970 to 9999",
    ),
    (
        "wait_until year 1",
        lambda: Echo.set(wait_until=datetime(1, 1, 2, tzinfo=UTC)).perform_later(),
        EnqueueError,
        "1970 to 9999",
    ),
    (
        "bulk of strings",
        lambda: Echo.perform_all_later(["a", "b"]),
        EnqueueError,
        "one mapping of arguments per job, e.g. [{'to': 'a@b.c'}, ...]; item 0 is 'a'",
    ),
    ("bulk of a string", lambda: Echo.perform_all_later("ab"), EnqueueError, "list of argument mappings"),
    ("bulk bad item 2", lambda: Echo.perform_all_later([{}, {}, {"x": {1}}]), EnqueueError, "item 2: argument x"),
]


@pytest.mark.parametrize(("call", "error", "fragment"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_input_is_refused_and_nothing_is_stored(
    queue: JobQueue, call: Callable[[], Any], error: type[Exception], fragment: str
) -> None:
    """Each bad input raises a clear error naming what is wrong, and no row is written."""
    with pytest.raises(error) as raised:
        call()
    assert fragment in str(raised.value)
    assert rows(queue) == []


def test_enqueue_by_name_refuses_bad_names_and_options(queue: JobQueue) -> None:
    """queue.enqueue checks the queue, priority and options like set() does, and stores nothing."""
    with pytest.raises(EnqueueError, match="NUL"):
        queue.enqueue("matrix.echo", {}, queue="a\x00b")
    with pytest.raises(EnqueueError, match="priority must be between"):
        queue.enqueue("matrix.echo", {}, priority=2**31)
    with pytest.raises(EnqueueError, match="unknown enqueue options"):
        queue.enqueue("matrix.echo", {}, prio=1)
    with pytest.raises(EnqueueError, match="argument x: NaN"):
        queue.enqueue("matrix.echo", {"x": math.nan})
    assert rows(queue) == []


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"queue": "q\x00"}, "NUL"),
        ({"queue": "q\ud800"}, "surrogate"),
        ({"queue": "q" * 101}, "at most 100"),
        ({"priority": 2**31}, "priority must be between"),
        ({"max_retries": 2**31}, "max_retries must be at most"),
        ({"extra_args": "allow"}, "extra_args must be 'forbid' or 'ignore'"),
    ],
)
def test_job_and_handler_definitions_check_the_same_limits(
    queue: JobQueue, options: dict[str, Any], fragment: str
) -> None:
    """@job and register_handler refuse what the database could not store, naming the option."""
    with pytest.raises(JobDefinitionError, match=fragment):
        queue.register_handler("matrix.bad_handler", lambda args: None, **options)
    with pytest.raises(JobDefinitionError, match=fragment):

        @job(name="matrix.bad_job", **options)
        class Bad(BaseJob[dict[str, Any]]):
            def perform(self, args: dict[str, Any]) -> None:
                return None


@pytest.mark.parametrize("name", ["a\x00b", "a\udfff", "n" * 201, " "])
def test_bad_job_names_are_refused(queue: JobQueue, name: str) -> None:
    """A job name the database could not store as given is refused at definition time."""
    with pytest.raises(JobDefinitionError, match="name must"):
        queue.register_handler(name, lambda args: None)


def test_awkward_text_round_trips_identically_single_and_bulk(queue: JobQueue) -> None:
    """Names and arguments at the limits, full of awkward text, are stored exactly, one by one and in bulk."""
    args = {"text": AWKWARD, AWKWARD: [AWKWARD, "\x00 escaped NUL is fine inside JSON", 1.5, None, True]}
    single = Awkward.perform_later(**args)
    bulk = Awkward.set(priority=2**31 - 1).perform_all_later([args, args])
    lowest = Awkward.set(priority=-(2**31)).perform_all_later([args])
    stored = rows(queue)
    assert [r["name"] for r in stored] == [LONG_NAME] * 4
    assert [r["queue"] for r in stored] == [LONG_QUEUE] * 4
    assert [r["priority"] for r in stored] == [0, 2**31 - 1, 2**31 - 1, -(2**31)]
    expected = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    assert [r["args"] for r in stored] == [expected] * 4
    for handle in (single, *bulk, *lowest):
        info = handle.refresh()
        assert (info.name, info.queue, info.args) == (LONG_NAME, LONG_QUEUE, args)
    assert queue.drain() == 4
    assert single.result(timeout=10) == args
    listed = queue.jobs(queue=LONG_QUEUE, name=LONG_NAME)
    assert len(listed) == 4


def test_tuples_become_lists_and_models_their_json(queue: JobQueue) -> None:
    """A tuple is stored as a JSON list and a pydantic model value as its JSON dump, as documented."""
    handle = Echo.perform_later(pair=(1, "a"), item=Item(price=2))
    assert rows(queue)[0]["args"] == '{"pair":[1,"a"],"item":{"price":2.0}}'
    assert handle.refresh().args == {"pair": [1, "a"], "item": {"price": 2.0}}


def test_nesting_at_the_limit_is_stored(queue: JobQueue) -> None:
    """Arguments exactly as deep as max_payload_depth (the arguments object counts) are stored and run."""
    handle = Echo.perform_later(deep=nested(63))
    assert queue.drain() == 1
    assert handle.result(timeout=10) == {"deep": nested(63)}


def test_secret_is_stored_as_given_and_masked_by_redact(queue: JobQueue) -> None:
    """A SecretStr argument reaches perform as given; redact() masks it for people to read."""
    handle = PlaceOrder.perform_later(to="a@b.c", token="s3cret", items=[{"price": 1.25}])
    info = handle.refresh()
    assert redact(info.args, Order) == {"to": "a@b.c", "items": [{"price": 1.25}], "token": "**********", "from": "me"}
    assert queue.drain() == 1
    assert handle.result(timeout=10) == {"to": "a@b.c", "token": "s3cret", "from": "me", "prices": [1.25]}


def test_aliased_field_round_trips_to_perform(queue: JobQueue) -> None:
    """A field with an alias is stored under the alias, so the worker validates it back as given."""
    handle = PlaceOrder.perform_later(to="a", **{"from": "boss"})
    assert json.loads(rows(queue)[0]["args"])["from"] == "boss"
    assert queue.drain() == 1
    assert handle.result(timeout=10)["from"] == "boss"


def test_extra_args_ignore_drops_unknown_keywords(queue: JobQueue) -> None:
    """extra_args='ignore' keeps pydantic's default: an unknown keyword is dropped, the job stored."""
    handle = LenientOrder.perform_later(to="a", too="typo")
    assert "too" not in handle.refresh().args
    assert queue.drain() == 1
    assert handle.result(timeout=10)["to"] == "a"


def test_far_but_valid_times_are_stored_and_readable(queue: JobQueue) -> None:
    """The latest allowed run time and the longest delay are stored, and every reader can show them."""
    latest = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    at = Echo.perform_at(latest)
    later = Echo.perform_in(timedelta(days=365 * 99))
    assert at.refresh().run_at == latest
    assert later.refresh().run_at > datetime.now(UTC) + timedelta(days=365 * 98)
    assert len(queue.jobs()) == 2
    assert queue.run_once() == 0


@job(name="matrix.snooze_forever", max_retries=0)
class SnoozeForever(BaseJob[dict[str, Any]]):
    def perform(self, args: dict[str, Any]) -> None:
        raise Snooze(float(args["seconds"]))


@pytest.mark.parametrize("seconds", ["nan", "inf", "1e13"])
def test_snooze_that_cannot_be_stored_fails_the_job_and_the_worker_goes_on(queue: JobQueue, seconds: str) -> None:
    """Snooze(NaN / inf / centuries) is a ValueError in the job: it fails with the reason, later jobs run."""
    bad = SnoozeForever.perform_later(seconds=seconds)
    good = Echo.perform_later(after="snooze")
    queue.start()
    with pytest.raises(JobFailed) as failed:
        bad.result(timeout=15)
    assert failed.value.error_type == "ValueError"
    assert "Snooze seconds must be a finite number" in failed.value.errors[-1]["message"]
    assert good.result(timeout=15) == {"after": "snooze"}


@pytest.mark.parametrize("name", ["q\x00", "q\ud800", "x" * 101, ""], ids=["nul", "surrogate", "too-long", "empty"])
def test_pause_queue_checks_the_name_it_stores(queue: JobQueue, name: str) -> None:
    """A paused queue's name is stored too: the same check as enqueue, nothing stored on refusal."""
    with pytest.raises(ValueError, match="queue"):
        queue.pause_queue(name)
    assert queue.paused_queues() == []
