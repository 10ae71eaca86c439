"""The Django conformance suite: run by Python >= 3.12 environments with Django 6 (make test-django)."""
