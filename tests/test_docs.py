"""Every ```python block in docs/*.md runs, top to bottom per page, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Pages whose examples need more than the main environment: django.md needs Django 6 (Python >= 3.12) and is
#: run by tests/django/test_docs.py in the Django environments.
ELSEWHERE = {"django.md"}
PAGES = sorted(page for page in (ROOT / "docs").glob("*.md") if page.name not in ELSEWHERE)
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def page_script(page: Path) -> str:
    """The page's python blocks joined into one script."""
    return "\n\n".join(BLOCK.findall(page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", [p for p in PAGES if page_script(p)], ids=lambda p: p.name)
def test_docs_examples_run(page: Path, db_url: str, tmp_path: Path) -> None:
    """The page's examples run without error against a fresh database."""
    script = tmp_path / f"{page.stem}.py"
    script.write_text(page_script(page), encoding="utf-8")
    env = {**os.environ, "JOBKIT_DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    if page.name == "testing.md":
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    else:
        command = [sys.executable, str(script)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{page.name} examples failed:\n{done.stdout}\n{done.stderr}"
