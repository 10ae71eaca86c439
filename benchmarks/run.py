"""Run the whole benchmark suite: ``python -m benchmarks.run`` (``make bench``); ``--quick`` for a smoke run.

Every (library, database, workload, repetition) runs in a subprocess of its own with a time limit; a
peer that fails to install, start or finish is reported and skipped, never fails the run. jobkit runs
from this interpreter, the peers from ``benchmarks/.venv-peers`` (created from
``benchmarks/requirements-peers.txt`` on first use, with Python >= 3.12 when one is found, as oban
needs it; otherwise with this interpreter, and oban is skipped). Repetitions are interleaved (every
library runs repetition 1 of a workload before any runs repetition 2) so that drift on a shared
machine hits all libraries alike. One Markdown table is printed and saved under ``benchmarks/results/``.

W7 (W2 and W3 again on a table holding 1,000,000 finished and 100,000 future rows, jobkit only) is part
of the full run, not of ``--quick``; ``--workloads W7`` stands for W7-W2,W7-W3. Its seeded database
is built once and cached (benchmarks/history.py), so only the first run pays the seeding.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.libs import LIBRARIES, SEEDS_HISTORY

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
PEERS_VENV = BENCH / ".venv-peers"
PEERS_REQUIREMENTS = BENCH / "requirements-peers.txt"
RESULTS = BENCH / "results"

WORKLOADS = ("W1", "W1b", "W2", "W2p2", "W2p4", "W3", "W4c10", "W4c50", "W5")
#: W7 runs W2 and W3 again on a table with a history; in the full run, not in --quick
HISTORY_WORKLOADS = ("W7-W2", "W7-W3")
ALIASES = {"W7": HISTORY_WORKLOADS}
LIMIT_CASES = (
    ("sqlite", "insert-loop"),
    ("postgres", "insert-loop"),
    ("postgres", "pgbench-c1"),
    ("postgres", "pgbench-c10"),
    ("sqlite", "claim-loop"),
    ("postgres", "claim-loop"),
)
DB_LABEL = {"sqlite": "SQLite", "postgres": "PostgreSQL", "redis": "Redis"}


#: the newest interpreter wins; oban needs Python >= 3.12, the other peers run on any of these
PEERS_MIN_PYTHON = (3, 12)
PEERS_CANDIDATES = ("python3.13", "python3.12")


def _python_version(executable: str) -> tuple[int, int, int] | None:
    """The version of an interpreter, by running it (None if it does not run, like an inactive pyenv shim)."""
    try:
        done = subprocess.run(
            [executable, "-c", "import sys; print(*sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 3:
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def peers_base_python() -> tuple[str, tuple[int, int, int]]:
    """The interpreter to build the peers' environment with: Python >= 3.12 if one is found, else this one.

    Looked for as ``python3.13`` and ``python3.12`` on PATH, then in ``~/.pyenv/versions/3.1[23]*``;
    each candidate is run once, so a pyenv shim for a version that is not active is passed over.
    """
    candidates: list[str] = []
    for name in PEERS_CANDIDATES:
        found = shutil.which(name)
        if found:
            candidates.append(found)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for pattern in ("3.13*", "3.12*"):
        candidates += [str(p) for p in sorted(pyenv.glob(f"{pattern}/bin/python3"), reverse=True)]
    for candidate in candidates:
        version = _python_version(candidate)
        if version is not None and version[:2] >= PEERS_MIN_PYTHON:
            return candidate, version
    current = getattr(sys, "_base_executable", sys.executable)
    return current, (sys.version_info[0], sys.version_info[1], sys.version_info[2])


def peers_python(log: list[str]) -> str | None:
    """The peers' interpreter, (re)building the environment if it is missing or stale (None if that fails).

    The stamp file records the interpreter the environment was built with: an environment built with
    another version (say 3.11, before a 3.12 was found) is rebuilt from scratch, as is one older than
    ``requirements-peers.txt``.
    """
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    base, version = peers_base_python()
    wanted = "python " + ".".join(map(str, version))
    if version[:2] < PEERS_MIN_PYTHON:
        log.append(
            f"no Python >= {'.'.join(map(str, PEERS_MIN_PYTHON))} found (tried {', '.join(PEERS_CANDIDATES)} "
            f"and ~/.pyenv/versions): the peers run on {wanted}, so oban is skipped"
        )
    if (
        python.exists()
        and stamp.exists()
        and stamp.read_text().strip() == wanted
        and stamp.stat().st_mtime >= PEERS_REQUIREMENTS.stat().st_mtime
    ):
        return str(python)
    print(f"installing the peers into {PEERS_VENV} with {wanted} ({base}) ...", flush=True)
    try:
        subprocess.run([base, "-m", "venv", "--clear", str(PEERS_VENV)], check=True, capture_output=True, text=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(PEERS_REQUIREMENTS)],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        log.append(f"peers' environment could not be installed: {detail.strip()[-500:]}")
        return None
    stamp.write_text(wanted + "\n")
    return str(python)


def run_one(python: str, lib: str, db: str, workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """One case in its own subprocess; a crash or time-out becomes an ``error`` entry."""
    cmd = [python, "-m", "benchmarks.case", "--lib", lib, "--db", db, "--workload", workload, "--n", str(args.n)]
    cmd += ["--idle", str(args.idle), "--settle", str(args.settle)]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    base: dict[str, Any] = {"lib": lib, "db": db, "workload": workload}
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {args.timeout:.0f}s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {**base, "error": f"exit {done.returncode}: {done.stderr.strip()[-400:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def cases(args: argparse.Namespace, available: dict[str, bool]) -> list[tuple[str, str, str]]:
    """Every (library, database, workload) to run, in order."""
    chosen = []
    for workload in args.workloads:
        for lib in args.libs:
            if workload in HISTORY_WORKLOADS and lib not in SEEDS_HISTORY:
                continue
            for db in LIBRARIES[lib][1]:
                if db in args.dbs or (db == "redis" and "redis" in args.dbs):
                    chosen.append((lib, db, workload))
    if args.limits:
        chosen += [("limit", db, w) for db, w in LIMIT_CASES if db in args.dbs]
    return [c for c in chosen if available.get(c[1], True)]


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric figure across repetitions (max for duplicate counts)."""
    good = [r for r in runs if "error" not in r and "skipped" not in r]
    if not good:
        return runs[-1] | {"runs": 0}
    merged: dict[str, Any] = dict(good[0])
    for key, value in good[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [r[key] for r in good if isinstance(r.get(key), int | float)]
            if key in ("duplicates", "missing"):
                merged[key] = max(values)
            else:
                merged[key] = statistics.median(values)
    merged["runs"] = len(good)
    failed = len(runs) - len(good)
    if failed:
        merged["note"] = (merged.get("note", "") + f"; {failed} run(s) failed").strip("; ")
    return merged


def figure(r: dict[str, Any]) -> str:
    """The human figure of one aggregated result."""
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    if "error" in r:
        return f"failed: {r['error'][:120]}"
    w = r["workload"]
    if w in ("W3", "W7-W3"):
        return f"{r['p50']:.1f} / {r['p95']:.1f} / {r['p99']:.1f} ms"
    if w.startswith("W4"):
        return f"{r['value']:,.0f} jobs/s ({100 * r['of_ideal']:.0f}% of {r['ideal']:,.0f})"
    if w == "W5":
        queries = "n/a" if r.get("value") is None else f"{r['value']:.2f} q/s"
        return (
            f"{queries}; RSS {r['rss_idle_start']:.0f}→{r['rss_idle_end']:.0f} MB idle, "
            f"{r['rss_after_load']:.0f} MB after load"
        )
    text = f"{r['value']:,.0f} {r['unit']}"
    if w.startswith("W2p"):
        text += f", ran twice: {r.get('duplicates', 0)}"
    return text


def higher_is_better(workload: str) -> bool:
    return workload not in ("W3", "W7-W3", "W5")


def ratios(results: list[dict[str, Any]]) -> list[str]:
    """jobkit against the best peer on the same database, per workload (and W1 against the insert loop)."""
    rows = ["| workload | database | jobkit | best peer | ratio |", "| --- | --- | --- | --- | --- |"]
    ok = [r for r in results if "error" not in r and "skipped" not in r and r.get("value") is not None]
    for r in ok:
        if r["lib"] != "jobkit":
            continue
        peers = [p for p in ok if p["lib"] not in ("jobkit", "limit") and p["workload"] == r["workload"]]
        same = [p for p in peers if p["db"] == r["db"]]
        if not same:
            continue
        better = max if higher_is_better(r["workload"]) else min
        best = better(same, key=lambda p: p["value"])
        if higher_is_better(r["workload"]):
            ratio = f"{r['value'] / best['value']:.2f}x (higher is better)"
        else:
            ratio = f"{r['value'] / best['value']:.2f}x (lower is better)" if best["value"] else "n/a"
        rows.append(
            f"| {r['workload']} | {DB_LABEL[r['db']]} | {figure(r)} | {best['lib']}: {figure(best)} | {ratio} |"
        )
    for r in ok:
        if r["lib"] == "jobkit" and r["workload"] == "W1":
            limit = next((p for p in ok if p["lib"] == "limit" and p["db"] == r["db"]), None)
            if limit:
                rows.append(
                    f"| W1 vs insert loop | {DB_LABEL[r['db']]} | {figure(r)} | limit: {figure(limit)} | "
                    f"{limit['value'] / r['value']:.2f}x slower than the loop |"
                )
    for r in ok:
        if r["lib"] == "jobkit" and r["workload"] == "W2":
            loop = next(
                (p for p in ok if p["lib"] == "limit" and p["workload"] == "claim-loop" and p["db"] == r["db"]), None
            )
            if loop:
                rows.append(
                    f"| W2 vs claim loop | {DB_LABEL[r['db']]} | {figure(r)} | limit: {figure(loop)} | "
                    f"{r['value'] / loop['value']:.2f} of the loop |"
                )
    return rows


def history_ratios(results: list[dict[str, Any]]) -> list[str]:
    """W7: jobkit on a table with a history against the same workload on an empty table (target: within 10%)."""
    rows = [
        "| workload | database | empty table | 1,000,000 finished + 100,000 future rows | with history / empty |",
        "| --- | --- | --- | --- | --- |",
    ]
    ok = [r for r in results if "error" not in r and "skipped" not in r and r.get("value") is not None]
    for r in ok:
        if r["workload"] not in HISTORY_WORKLOADS:
            continue
        base = r["workload"].removeprefix("W7-")
        empty = next((p for p in ok if (p["lib"], p["db"], p["workload"]) == (r["lib"], r["db"], base)), None)
        if empty is None:
            continue
        if base == "W3":
            ratio = f"p50 {r['p50'] / empty['p50']:.2f}x, p99 {r['p99'] / empty['p99']:.2f}x (lower is better)"
        else:
            ratio = f"{r['value'] / empty['value']:.2f}x (higher is better)"
        rows.append(f"| {r['workload']} | {DB_LABEL[r['db']]} | {figure(empty)} | {figure(r)} | {ratio} |")
    return rows if len(rows) > 2 else []


def table(results: list[dict[str, Any]]) -> list[str]:
    rows = ["| library | database | workload | figure | runs | notes |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        rows.append(
            f"| {r['lib']} | {DB_LABEL.get(r['db'], r['db'])} | {r['workload']} | {figure(r)} | "
            f"{r.get('runs', 0)} | {r.get('note', '')} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=None, help="jobs per workload (default 10,000; --quick: 300)")
    parser.add_argument("--runs", type=int, default=None, help="repetitions, medians reported (default 3)")
    parser.add_argument("--w5-runs", type=int, default=1, help="repetitions of the slow idle workload W5")
    parser.add_argument("--idle", type=float, default=None, help="W5 idle seconds (default 60; --quick: 3)")
    parser.add_argument("--settle", type=float, default=None, help="pause before W3/W5 measure (default 10)")
    parser.add_argument("--quick", action="store_true", help="small N, one run, short idle: a smoke test")
    parser.add_argument("--libs", default=",".join(LIBRARIES), help="comma-separated libraries")
    parser.add_argument("--dbs", default="sqlite,postgres,redis", help="comma-separated databases")
    parser.add_argument(
        "--workloads",
        default=None,
        help="comma-separated workloads; W7 stands for W7-W2,W7-W3 (default: all; --quick: all but W7)",
    )
    parser.add_argument("--no-limits", dest="limits", action="store_false", help="skip the physical-limit rows")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per case (default 600)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the saved table")
    args = parser.parse_args()
    args.n = args.n or (300 if args.quick else 10_000)
    args.runs = args.runs or (1 if args.quick else 3)
    args.idle = args.idle if args.idle is not None else (3.0 if args.quick else 60.0)
    args.settle = args.settle if args.settle is not None else (1.0 if args.quick else 10.0)
    args.timeout = args.timeout or (180.0 if args.quick else 600.0)
    args.libs = [name.strip() for name in args.libs.split(",") if name.strip()]
    args.dbs = [name.strip() for name in args.dbs.split(",") if name.strip()]
    if args.workloads is None:
        args.workloads = ",".join(WORKLOADS if args.quick else (*WORKLOADS, *HISTORY_WORKLOADS))
    args.workloads = [
        expanded
        for name in args.workloads.split(",")
        if name.strip()
        for expanded in ALIASES.get(name.strip(), (name.strip(),))
    ]
    unknown = [lib for lib in args.libs if lib not in LIBRARIES]
    if unknown:
        parser.error(f"unknown libraries: {unknown}")

    log: list[str] = []
    available = {"sqlite": True, "postgres": common.pg_reachable(), "redis": common.redis_reachable()}
    for db, ok in available.items():
        if not ok and db in args.dbs:
            log.append(f"{DB_LABEL[db]} is unreachable: its cases are skipped")
    if any(w in HISTORY_WORKLOADS for w in args.workloads) and any(lib not in SEEDS_HISTORY for lib in args.libs):
        log.append("W7 runs jobkit only: seeding a peer's history would mean writing its private tables by hand")
    peers = [lib for lib in args.libs if lib != "jobkit"]
    peer_python = peers_python(log) if peers else None

    todo = cases(args, available)
    print(f"{len(todo)} cases x up to {args.runs} runs, N={args.n}", flush=True)
    started = time.monotonic()
    collected: dict[tuple[str, str, str], list[dict[str, Any]]] = {case: [] for case in todo}
    for rep in range(args.runs):
        for lib, db, workload in todo:
            if workload == "W5" and rep >= args.w5_runs:
                continue
            if lib not in ("jobkit", "limit") and peer_python is None:
                collected[(lib, db, workload)].append(
                    {"lib": lib, "db": db, "workload": workload, "skipped": "peers' environment missing"}
                )
                continue
            python = sys.executable if lib in ("jobkit", "limit") else str(peer_python)
            t0 = time.monotonic()
            result = run_one(python, lib, db, workload, args)
            collected[(lib, db, workload)].append(result)
            status = result.get("error") or result.get("skipped") or f"{result.get('value', 0) or 0:,.1f}"
            print(
                f"  [{rep + 1}/{args.runs}] {lib:<13} {db:<9} {workload:<11} {status}  ({time.monotonic() - t0:.1f}s)"
            )
            sys.stdout.flush()
    results = [median_result(runs) for runs in collected.values() if runs]

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:])
    lines = [
        f"# Benchmark run {stamp}",
        "",
        f"Command: `{command.strip()}` — N={args.n}, medians of {args.runs} run(s) (W5: {min(args.w5_runs, args.runs)}),"
        f" {time.monotonic() - started:.0f}s in all, on {os.cpu_count()} cores.",
        "",
        *table(results),
        "",
        "## jobkit against the best peer on the same database",
        "",
        *ratios(results),
    ]
    if any(r["workload"] in HISTORY_WORKLOADS for r in results):
        history = history_ratios(results)
        lines += ["", "## W7: jobkit with a history in the table against the empty table", ""]
        lines += history or ["(no W2/W3 on an empty table in this run to compare with: add W2,W3 to --workloads)"]
    if log:
        lines += ["", "## Notes", "", *[f"- {entry}" for entry in log]]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stamp}.md").write_text(text)
    (args.out / f"{stamp}.json").write_text(json.dumps(results, indent=1))
    print(f"saved to {args.out / (stamp + '.md')}")


if __name__ == "__main__":
    main()
