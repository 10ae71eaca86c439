"""A worker child: ``python -m benchmarks.worker LIB DB WORKDIR CONCURRENCY LEDGER``.

It builds the library's adapter, marks itself ready in its ledger, waits for the harness's go signal
(a file), then runs the library's worker until it is killed.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path


def main() -> None:
    lib, db, workdir, concurrency, ledger_path = sys.argv[1:6]
    os.environ["BENCH_LEDGER"] = ledger_path
    logging.basicConfig(level=logging.WARNING, format=f"[{lib} worker %(process)d] %(name)s: %(message)s")
    from benchmarks import ledger, libs

    adapter = libs.load(lib, db, Path(workdir))
    ledger.mark_ready()
    go = Path(workdir) / "go"
    while not go.exists():
        time.sleep(0.002)
    adapter.run_worker(int(concurrency))


if __name__ == "__main__":
    main()
