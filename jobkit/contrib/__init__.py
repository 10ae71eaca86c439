"""Integrations with the frameworks and tools users already run: Django, Prometheus, OpenTelemetry, health checks.

Edges over the public API, like the CLI. Each module needs its own extra (``jobkit[django]``,
``jobkit[prometheus]`` …) and is imported only when used, so the core never depends on them.
"""
