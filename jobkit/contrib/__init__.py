"""Integrations with the tools users already run (Prometheus, OpenTelemetry, health checks).

Each module needs its own extra (``jobkit[prometheus]`` …) and is imported only when used, so
the core never depends on them.
"""
