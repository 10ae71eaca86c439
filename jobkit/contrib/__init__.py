"""Integrations with frameworks (edges over the public API, like the CLI); each one needs its extra."""
