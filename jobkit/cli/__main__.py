"""``python -m jobkit.cli`` runs the CLI, as ``python -m jobkit`` does."""

from jobkit.cli import main

main()
