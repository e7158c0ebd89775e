# syntax=docker/dockerfile:1
# PulmoGate api (REST API, web UI and /metrics on 0.0.0.0:8080). It also carries
# pulmogate-tools, the operator's commands (user, license, send, demo): `docker compose exec api pulmogate ...`.
# Build from the repository root: docker build -f deploy/docker/api.Dockerfile -t pulmogate/api:0.1.0 .

# --- build: /opt/pulmogate holds this service and what it needs, exactly as uv.lock pins them
#     (scripts/install.sh: the install step of setup.sh and CI); uv stays behind in /opt/uv.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    UV_TOOL_VENV=/opt/uv UV_NO_CACHE=1 UV_LINK_MODE=copy
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY scripts/install.sh scripts/install.sh
COPY libs/common libs/common
COPY libs/tools libs/tools
COPY services/api services/api
RUN bash scripts/install.sh /opt/pulmogate --frozen \
    --package pulmogate-api --package pulmogate-tools --no-dev --no-editable

# --- runtime: the virtualenv only, run as an unprivileged user.
FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 pulmogate \
 && useradd --system --uid 10001 --gid pulmogate --home-dir /data --no-create-home pulmogate \
 && mkdir -p /data \
 && chown pulmogate:pulmogate /data
COPY --from=build /opt/pulmogate /opt/pulmogate
ENV PATH=/opt/pulmogate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PULMOGATE_DATA_DIR=/data \
    PULMOGATE_API_HOST=0.0.0.0 \
    PULMOGATE_LOG_FORMAT=json
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8080/healthz\", timeout=3)"]
ENTRYPOINT ["pulmogate"]
CMD ["api"]
