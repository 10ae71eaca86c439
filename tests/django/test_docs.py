"""The ```python examples of docs/django.md run, on SQLite and PostgreSQL, with this environment's Django."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_docs import ROOT, page_script


def test_django_page_examples_run(db_url: str, tmp_path: Path) -> None:
    """docs/django.md's one-file example runs top to bottom against a fresh database."""
    script = tmp_path / "django_page.py"
    script.write_text(page_script(ROOT / "docs" / "django.md"), encoding="utf-8")
    env = {**os.environ, "JOBKIT_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"django.md examples failed:\n{done.stdout}\n{done.stderr}"
    assert "SUCCESSFUL 5" in done.stderr
