"""The Django app: add ``"jobkit.contrib.django"`` to INSTALLED_APPS for ``manage.py jobkit_worker``."""

from __future__ import annotations

from django.apps import AppConfig


class JobkitConfig(AppConfig):  # type: ignore[misc]
    """jobkit's Django app: it has no models, only the ``jobkit_worker`` management command."""

    name = "jobkit.contrib.django"
    label = "jobkit_django"
    verbose_name = "jobkit"
