"""A minimal Django project for the suite; its database comes from JOBKIT_TEST_DJANGO_DB."""
