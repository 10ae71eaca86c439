"""``manage.py jobkit_worker``."""
