"""jobkit for Django: a ``django.tasks`` backend and the ``manage.py jobkit_worker`` command.

Needs the ``jobkit[django]`` extra (Django >= 6.0, Python >= 3.12). In settings.py::

    INSTALLED_APPS = [..., "jobkit.contrib.django"]
    TASKS = {"default": {"BACKEND": "jobkit.contrib.django.JobkitBackend"}}

See docs/django.md.
"""

from jobkit.contrib.django._tasks import ReturnValueError
from jobkit.contrib.django.backend import JobkitBackend, JobkitTask

__all__ = ["JobkitBackend", "JobkitTask", "ReturnValueError"]
