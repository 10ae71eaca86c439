"""Alembic migrations shipped with jobkit (``jobkit db upgrade``)."""
