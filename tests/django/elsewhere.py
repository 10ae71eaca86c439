"""A task outside the app's ``tasks`` module: the worker finds it from the jobs that wait for it."""

from __future__ import annotations

from django.tasks import task


@task
def hidden(word: str) -> str:
    return word.upper()
