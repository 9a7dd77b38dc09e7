# DELIBERATE COPY: byte-identical in 05_kubernetes (tests/test_stage_copies.py);
# edit 04_container/proxy.Dockerfile, then `make sync`.
# Stage 04's proxy: nginx from Debian's packages, configured by nginx.conf (the
# stage-03 teaching file, a deliberate copy), in its own container beside the
# server's. `make stage-4` builds and starts both on one Docker network; by hand:
#   docker build -f proxy.Dockerfile -t iris-proxy:dev .
# Same base image as the server (python:3.11-slim, Debian 12): nothing to pull
# that the server's build did not already need, and `make base-image` builds a
# stand-in where no registry answers. nginx comes from Debian's own packages.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim
ARG PYTHON_VERSION

# nginx-light: nginx with the core HTTP modules (proxy included);
# gettext-base: envsubst, which fills in nginx.conf's two addresses at start.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends nginx-light gettext-base \
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
      org.opencontainers.image.base.name="python:${PYTHON_VERSION}-slim"

# SIGQUIT is nginx's graceful stop (SIGTERM would drop requests in flight).
STOPSIGNAL SIGQUIT
# Fill in the addresses into /tmp (the root filesystem may be read-only), then
# nginx replaces the shell as PID 1 (exec), in the foreground (daemon off).
CMD ["sh", "-c", "mkdir -p /tmp/nginx/tmp && envsubst '${NGINX_LISTEN} ${NGINX_UPSTREAM}' < /etc/nginx/iris/nginx.conf > /tmp/nginx/nginx.conf && exec nginx -p /tmp/nginx -c nginx.conf -e stderr"]
