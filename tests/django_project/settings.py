"""A minimal Django project for afterward's tests (SQLite file in a temp dir)."""

import tempfile
from pathlib import Path

SECRET_KEY = "afterward-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.django_project.urls"
MIDDLEWARE = ["afterward.integrations.django.DeferMiddleware"]
INSTALLED_APPS: list[str] = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(Path(tempfile.mkdtemp(prefix="afterward-django-")) / "db.sqlite3"),
    }
}
USE_TZ = True
LOGGING_CONFIG = None
