# One image for the web server, the Celery worker and the migration step.

FROM python:3.13-slim-trixie AS build
# Which lock to install: compose.dev.yml asks for requirements-dev.txt.
ARG REQUIREMENTS=requirements.txt
RUN python -m venv /opt/venv
WORKDIR /build
# Dependencies first, in their own layer: a source change does not reinstall them. Each
# lock (scripts/lock) pins every package with its hashes: the image gets exactly those files.
COPY requirements*.txt ./
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes \
    -r "$REQUIREMENTS"

FROM python:3.13-slim-trixie
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    FLASK_APP=app.py \
    GUNICORN_BIND=0.0.0.0:8000
# A fixed uid, so files in named volumes keep their owner across rebuilds.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app \
    && install -d -o app -g app -m 755 /var/lib/app-secrets
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Source owned by root: the app user can read it but not change it.
COPY . .
# Numeric, so orchestrators can verify it is not root without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "app:app"]
