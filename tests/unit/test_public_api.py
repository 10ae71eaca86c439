"""The package's public surface and its internal layering."""

from __future__ import annotations

import ast
from pathlib import Path

import jobkit

PACKAGE = Path(jobkit.__file__).parent

# Lower layers never import higher ones (STYLE.md): a module may import its own layer or below.
LAYERS = [
    {"_vocabulary"},
    {"errors", "_cancel", "_clock", "_json", "_limits", "_names"},
    {"_payload", "_backoff", "_cron", "_registry", "_settings", "_events", "_flow", "_unique", "_recurrence"},
    {"_store", "_handle", "_job", "_enqueue", "_plugins"},
    {"_runtime", "_snapshots", "_why"},
    {"_queue_admin", "_queue_schedules"},
    {"_queue"},
    {"cli", "testing", "limits", "pytest_plugin", "contrib", "dashboard", "_bulk", "__init__", "__main__"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"module {module} is in no layer")


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and every name in it exists."""
    assert list(jobkit.__all__) == sorted(jobkit.__all__)
    for name in jobkit.__all__:
        assert hasattr(jobkit, name), name


def test_public_names_have_docstrings() -> None:
    """Every public class and function exported by jobkit carries a docstring."""
    for name in jobkit.__all__:
        value = getattr(jobkit, name)
        if callable(value):
            assert value.__doc__, f"jobkit.{name} has no docstring"


def test_imports_flow_downward_only() -> None:
    """No jobkit module imports a module of a higher layer."""
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        relative = path.relative_to(PACKAGE).with_suffix("")
        module = ".".join(relative.parts)
        own = layer_of(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jobkit."):
                target = node.module.removeprefix("jobkit.")
                assert layer_of(target) <= own, f"{module} (layer {own}) imports {target} (layer {layer_of(target)})"


def test_sqlalchemy_only_inside_the_store() -> None:
    """Only jobkit._store imports SQLAlchemy at run time."""
    for path in PACKAGE.rglob("*.py"):
        if "_store" in path.parts:
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.startswith("sqlalchemy") for n in names), f"{path} imports SQLAlchemy"


def test_start_up_errors_are_exported_job_errors() -> None:
    """DatabaseUnavailable and SchemaMissing are public JobErrors whose message names the URL."""
    assert issubclass(jobkit.DatabaseUnavailable, jobkit.JobError)
    assert issubclass(jobkit.SchemaMissing, jobkit.JobError)
    missing = jobkit.SchemaMissing("sqlite:///jobs.sqlite3")
    assert str(missing) == "the database at sqlite:///jobs.sqlite3 has no jobkit tables: run `jobkit db upgrade`"
    down = jobkit.DatabaseUnavailable("postgresql+psycopg://u:***@h/db", "Connection refused")
    assert str(down) == "cannot reach the database at postgresql+psycopg://u:***@h/db: Connection refused"
