"""The public API type-checks under mypy --strict from a user's point of view."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_public_api_snippets_pass_mypy_strict() -> None:
    """tests/typing/public_api.py, written as a user would, is clean under mypy --strict."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(HERE / "public_api.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
