"""Unique options are validated when the class is defined, and the key follows the chosen arguments."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel, Field

from jobkit import BaseJob, JobDefinitionError, job
from jobkit._registry import unregister
from jobkit._unique import UniqueOptions


class Args(BaseModel):
    account_id: int
    note: str = Field(default="", alias="memo")


def define(**options: object) -> type[BaseJob[Args]]:
    @job(name="unit.unique", schema=Args, **options)  # type: ignore[arg-type]
    class Defined(BaseJob[Args]):
        def perform(self, args: Args) -> int:
            return args.account_id

    return Defined


@pytest.fixture(autouse=True)
def _forget() -> object:
    yield None
    unregister("unit.unique")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique_by": ("account",)}, "unit.unique: unique_by applies to unique jobs only"),
        ({"on_conflict": "replace"}, "unit.unique: on_conflict applies to unique jobs only"),
        ({"unique": True, "unique_by": ("account",)}, "unique_by names account, not fields of Args"),
        ({"unique": True, "unique_by": "account_id"}, "unique_by must be a non-empty tuple"),
        ({"unique": True, "on_conflict": "merge"}, "on_conflict must be one of 'skip', 'replace', 'debounce'"),
        ({"unique": True, "unique_states": ("pending",)}, "unique_states must include running"),
        ({"unique": True, "unique_states": ("pending", "running", "done")}, "unique_states must name job states"),
        ({"unique_for": timedelta(0)}, "unique_for must be a positive timedelta"),
        ({"unique": "yes"}, "unique must be True or False"),
    ],
)
def test_bad_unique_option_is_refused_naming_job_and_option(options: dict[str, object], message: str) -> None:
    """Each invalid unique option raises JobDefinitionError naming the job and the option."""
    with pytest.raises(JobDefinitionError, match=message):
        define(**options)


def test_unique_options_are_kept() -> None:
    """unique_for implies unique; unique_by is stored under the fields' stored (alias) keys."""
    unique = define(unique_for=timedelta(minutes=5), unique_by=("account_id", "note")).job_type().options.unique
    assert unique == UniqueOptions(by=("account_id", "memo"), window=300.0)


def test_the_key_follows_name_queue_and_the_chosen_arguments() -> None:
    """The key changes with the name, the queue (unless across queues) and the chosen arguments only."""
    by_account = UniqueOptions(by=("account_id",))
    key = by_account.key("n", "default", '{"account_id": 1, "memo": "a"}')
    assert key == by_account.key("n", "default", '{"memo": "b", "account_id": 1}')
    assert key != by_account.key("n", "default", '{"account_id": 2, "memo": "a"}')
    assert key != by_account.key("n", "mailers", '{"account_id": 1, "memo": "a"}')
    assert key != by_account.key("other", "default", '{"account_id": 1, "memo": "a"}')
    anywhere = UniqueOptions(across_queues=True)
    assert anywhere.key("n", "a", '{"x": 1}') == anywhere.key("n", "b", '{"x": 1}')
    every_arg = UniqueOptions()
    assert every_arg.key("n", "q", '{"x": 1, "y": 2}') != every_arg.key("n", "q", '{"x": 1, "y": 3}')
    assert len(key) == 64


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency_key": "account"}, "unit.unique: concurrency_key must be a callable"),
        ({"concurrency_limit": 2}, "unit.unique: concurrency_limit applies to jobs with a concurrency_key only"),
        ({"concurrency_key": str, "concurrency_limit": 0}, "unit.unique: concurrency_limit must be between 1 and"),
        ({"concurrency_key": str, "concurrency_limit": True}, "unit.unique: concurrency_limit must be an int"),
    ],
)
def test_bad_concurrency_options_are_refused(options: dict[str, object], message: str) -> None:
    """A concurrency key must be callable, and a limit needs a key and is at least 1."""
    with pytest.raises(JobDefinitionError, match=message):
        define(**options)


def test_concurrency_limit_defaults_to_one() -> None:
    """A key alone means one job per key at a time."""
    options = define(concurrency_key=lambda args: f"account:{args.account_id}").job_type().options
    assert options.concurrency_limit == 1 and options.concurrency_key is not None
