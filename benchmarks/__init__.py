"""jobkit's benchmark suite: the workloads of shared/BENCHMARKS.md, run side by side with the peers.

``python -m benchmarks.run`` (or ``make bench``) runs everything; each library and workload runs in a
subprocess of its own. Modules here other than ``libs.jobkit_lib`` never import jobkit, because the peers
run from a separate virtual environment (``benchmarks/.venv-peers``).
"""
