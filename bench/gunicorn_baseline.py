"""gunicorn settings for the baseline app: the same numbers as the repo's gunicorn.conf.py."""

import os

bind = os.environ["GUNICORN_BIND"]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
preload_app = True
control_socket_disable = True
accesslog = "-"  # the product logs every request too
