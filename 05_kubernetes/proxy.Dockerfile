# DELIBERATE COPY: byte-identical in 05_kubernetes (tests/test_stage_copies.py);
# edit 04_container/proxy.Dockerfile, then `make sync`.
# Stage 04's proxy: nginx from Debian's packages, configured by nginx.conf (the
# stage-03 teaching file, a deliberate copy), in its own container beside the
# server's. `make stage-4` builds and starts both on one Docker network; by hand:
#   docker build -f proxy.Dockerfile -t iris-proxy:dev .
# The server's base image, named by its Debian release (python:3.11-slim-bookworm,
# Debian 12; `make base-image` builds a stand-in where no registry answers): the
# package versions below are pinned, and a pin only holds within one release
# (the plain python:3.11-slim tag moves to the next Debian when it ships).
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm
ARG PYTHON_VERSION

# nginx-light: nginx with the core HTTP modules (proxy included);
# gettext-base: envsubst, which fills in nginx.conf's two addresses at start.
# Pinned, so a rebuild installs what was tested (hadolint DL3008). The cost: a
# security update replaces the version in Debian's archive, and the build then
# fails until the pin is raised (apt-cache policy nginx-light names the new one).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends \
       nginx-light=1.22.1-9+deb12u12 \
       gettext-base=0.21-12 \
    && rm -rf /var/lib/apt/lists/*

COPY nginx.conf /etc/nginx/iris/nginx.conf

# The server's user, numeric: nginx needs no root to listen above port 1024.
ARG UID=10001
USER ${UID}

# nginx.conf's two addresses. The server container is reachable as `app` on
# the Docker network (`docker run --network-alias app`); in a Kubernetes pod
# the sidecar sets NGINX_UPSTREAM=127.0.0.1:8000 (one network per pod).
ENV NGINX_LISTEN=8080 \
    NGINX_UPSTREAM=app:8000
EXPOSE 8080

# The proxy is healthy when a request gets through it to the server.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"]

LABEL org.opencontainers.image.title="iris-proxy" \
      org.opencontainers.image.description="nginx buffering in front of the iris server (model-serving-layers, stage 04)" \
      org.opencontainers.image.base.name="python:${PYTHON_VERSION}-slim-bookworm"

# SIGQUIT is nginx's graceful stop (SIGTERM would drop requests in flight).
STOPSIGNAL SIGQUIT
# Fill in the addresses into /tmp (the root filesystem may be read-only), then
# nginx replaces the shell as PID 1 (exec), in the foreground (daemon off).
CMD ["sh", "-c", "mkdir -p /tmp/nginx/tmp && envsubst '${NGINX_LISTEN} ${NGINX_UPSTREAM}' < /etc/nginx/iris/nginx.conf > /tmp/nginx/nginx.conf && exec nginx -p /tmp/nginx -c nginx.conf -e stderr"]
