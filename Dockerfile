# The inbox as an image: the project installed into a virtualenv, run as an unprivileged user.
#
#   docker build -t inbox .
#   docker run … inbox                 the web server (gunicorn with inbox/gunicorn_conf.py)
#   docker run … inbox inbox worker    the background worker (the second command)
#   docker run … inbox flask --app inbox db upgrade
#
# compose.yaml runs all of it with PostgreSQL, Redis and a TLS proxy; docs/DEPLOY.md explains.
# BASE_IMAGE may be any Debian-like image with python3 (>= 3.11) and its venv module.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Behind a private index or a TLS-inspecting proxy: --build-arg PIP_INDEX_URL=… / PIP_CERT=<a mounted CA bundle>.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/inbox
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inbox ./inbox
RUN /opt/inbox/bin/pip install ".[sentry]"

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 inbox \
 && useradd --system --uid 10001 --gid inbox --home-dir /var/lib/inbox --shell /usr/sbin/nologin inbox \
 && mkdir -p /var/lib/inbox/media /var/lib/inbox-metrics \
 && chown -R inbox:inbox /var/lib/inbox /var/lib/inbox-metrics
COPY --from=build /opt/inbox /opt/inbox
COPY migrations /opt/inbox-migrations
ENV PATH=/opt/inbox/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    INBOX_ENV=production \
    INBOX_INSTANCE_PATH=/var/lib/inbox \
    MIGRATIONS_DIR=/opt/inbox-migrations \
    PROMETHEUS_MULTIPROC_DIR=/var/lib/inbox-metrics \
    LOG_FORMAT=json \
    WEB_BIND=0.0.0.0:8000 \
    FLASK_APP=inbox
USER inbox
WORKDIR /var/lib/inbox
VOLUME ["/var/lib/inbox"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python3 -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
CMD ["gunicorn", "-c", "python:inbox.gunicorn_conf", "inbox:create_app()"]
