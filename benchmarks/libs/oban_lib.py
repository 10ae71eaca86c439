"""oban (PyPI) would go here; it needs Python >= 3.12, so on older interpreters the harness reports it skipped."""

from __future__ import annotations

import sys

raise ImportError(f"oban needs Python >= 3.12; the peers' environment runs {sys.version.split()[0]}")
