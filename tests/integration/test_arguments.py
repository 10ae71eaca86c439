"""Argument errors name where they are: the bulk item's index and the argument's path, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from jobkit import EnqueueError, JobQueue
from tests.jobs import AddOne, Echo


def test_perform_all_later_of_plain_strings_says_what_it_takes(queue: JobQueue) -> None:
    """`perform_all_later(["a", "b"])` is refused naming the item and the expected shape, not a dict() error."""
    with pytest.raises(EnqueueError) as caught:
        AddOne.perform_all_later(["a", "b"])
    assert str(caught.value) == (
        "tests.add_one: perform_all_later takes one mapping of arguments per job, e.g. [{'to': 'a@b.c'}, ...]; "
        "item 0 is 'a'"
    )
    assert queue.jobs() == []


def test_a_bulk_row_that_fails_its_schema_names_its_index(queue: JobQueue) -> None:
    """A schema error in the third row of a bulk enqueue puts the row's index in the title and the path."""
    with pytest.raises(pydantic.ValidationError) as caught:
        AddOne.perform_all_later([{"n": 1}, {"n": 2}, {"n": "three"}])
    assert caught.value.title == "tests.add_one (item 2)"
    assert [error["loc"] for error in caught.value.errors()] == [(2, "n")]
    assert "1 validation error for tests.add_one (item 2)\n2.n\n" in str(caught.value)
    assert queue.jobs() == []


def test_a_single_schema_error_keeps_the_plain_path(queue: JobQueue) -> None:
    """One job's schema error stays pydantic's own, its path the argument's name."""
    with pytest.raises(pydantic.ValidationError) as caught:
        AddOne.perform_later(n="three")
    assert [error["loc"] for error in caught.value.errors()] == [("n",)]


def test_an_unserialisable_argument_is_named_by_its_path(queue: JobQueue) -> None:
    """A value that is not JSON, deep inside an argument, is named by its path (and its row in a bulk enqueue)."""
    with pytest.raises(EnqueueError, match=r"^tests\.echo: argument payload\.items\[1\]: set is not JSON"):
        Echo.perform_later(payload={"items": [1, {2, 3}]})
    with pytest.raises(EnqueueError, match=r"^tests\.echo: item 1: argument when: datetime is not JSON"):
        Echo.perform_all_later([{"when": "today"}, {"when": datetime.now(UTC)}])
    assert queue.jobs() == []
