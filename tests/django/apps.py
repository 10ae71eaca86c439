"""The test project's app: its ``tasks`` module is found by ``jobkit_worker``'s autodiscovery."""

from django.apps import AppConfig


class TestTasksConfig(AppConfig):
    name = "tests.django"
    label = "jobkit_tests"
