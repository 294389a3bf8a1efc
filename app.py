"""Entry point for `flask`, `gunicorn app:app` and `celery -A app.celery`."""

import sys

from project import create_app, ext_celery
from project.config import ConfigError

try:
    app = create_app()
except ConfigError as error:
    # One clear line and a non-zero exit for flask, gunicorn and celery alike.
    sys.exit(f"configuration error: {error}")

celery = ext_celery.celery
