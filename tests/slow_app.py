"""An --app module that takes long to import, for signals during a worker's start-up.

It prints a marker line before sleeping, so a test knows the import has begun; the sleep is
``JOBKIT_TEST_IMPORT_SLEEP`` seconds (60 by default).
"""

from __future__ import annotations

import os
import time

import tests.jobs  # noqa: F401  (the worker then has job types, as a real app would)

print("slow_app: importing", flush=True)
time.sleep(float(os.environ.get("JOBKIT_TEST_IMPORT_SLEEP", "60")))
