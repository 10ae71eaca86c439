"""@job validates its options when the class is defined."""

from __future__ import annotations

import pytest
from pydantic import BaseModel
from tenacity import wait_fixed

from jobkit import BaseJob, JobDefinitionError, job
from jobkit._registry import lookup, unregister


class Args(BaseModel):
    x: int


def define(name: str, **options: object) -> type[BaseJob[Args]]:
    @job(name=name, **options)  # type: ignore[arg-type]
    class Defined(BaseJob[Args]):
        def perform(self, args: Args) -> int:
            return args.x

    return Defined


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "unit.bad: max_retries must be >= 0, got -1"),
        ({"backoff": "sideways"}, "unit.bad: backoff is invalid: unknown backoff 'sideways'"),
        ({"isolation": "fork"}, "unit.bad: isolation must be 'thread' or 'process', got 'fork'"),
        ({"schema": dict}, "unit.bad: schema must be a pydantic BaseModel subclass"),
        ({"timeout": -5}, "unit.bad: timeout must be a positive number"),
        ({"queue": ""}, "unit.bad: queue must be a non-empty string"),
        ({"priority": "high"}, "unit.bad: priority must be an int"),
        ({"retry_on": (ValueError, "x")}, "unit.bad: retry_on must be a tuple of exception classes"),
    ],
)
def test_bad_option_is_refused_naming_job_and_option(options: dict[str, object], message: str) -> None:
    """Each invalid option raises JobDefinitionError naming the job and the option."""
    with pytest.raises(JobDefinitionError, match=message.replace("(", r"\(")):
        define("unit.bad", schema=Args, **options) if "schema" not in options else define("unit.bad", **options)
    assert lookup("unit.bad") is None


def test_second_class_under_same_name_is_refused() -> None:
    """Two different classes cannot share one stable job name."""
    define("unit.dup", schema=Args)
    try:
        with pytest.raises(JobDefinitionError, match="already registered"):

            @job(name="unit.dup", schema=Args)
            class Other(BaseJob[Args]):
                def perform(self, args: Args) -> int:
                    return 0

    finally:
        unregister("unit.dup")


def test_reregistering_the_same_class_is_harmless() -> None:
    """Defining the same class again (a module reload) replaces the registration quietly."""
    first = define("unit.reload", schema=Args)
    second = define("unit.reload", schema=Args)
    assert first.job_type().name == second.job_type().name == "unit.reload"
    unregister("unit.reload")


def test_class_without_perform_is_refused() -> None:
    """A job class must implement perform."""
    with pytest.raises(JobDefinitionError, match="must implement perform"):

        @job(name="unit.noperform")
        class NoPerform(BaseJob[Args]):
            pass


def test_undecorated_class_cannot_be_enqueued() -> None:
    """A BaseJob subclass without @job explains what is missing."""

    class Plain(BaseJob[Args]):
        def perform(self, args: Args) -> int:
            return 1

    with pytest.raises(JobDefinitionError, match="not declared with @job"):
        Plain.perform_later(x=1)


def test_default_name_is_the_qualified_class_name() -> None:
    """Without name=, the class's qualified name is the stable job name."""

    @job(schema=Args)
    class UnitDefaultName(BaseJob[Args]):
        def perform(self, args: Args) -> int:
            return 1

    assert UnitDefaultName.job_type().name.endswith("UnitDefaultName")
    unregister(UnitDefaultName.job_type().name)


def test_tenacity_wait_and_callable_backoffs_are_accepted() -> None:
    """backoff= takes a tenacity wait strategy or an attempt -> seconds callable."""
    fixed = define("unit.tenacity", schema=Args, backoff=wait_fixed(7))
    linear = define("unit.callable", schema=Args, backoff=lambda attempt: attempt * 3.0)
    assert fixed.job_type().options.backoff_seconds(4) == 7
    assert linear.job_type().options.backoff_seconds(4) == 12
    unregister("unit.tenacity")
    unregister("unit.callable")
