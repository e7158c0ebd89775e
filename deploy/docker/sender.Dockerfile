# syntax=docker/dockerfile:1
# PulmoGate sender (bus worker).
# Build from the repository root: docker build -f deploy/docker/sender.Dockerfile -t pulmogate/sender:0.1.0 .

# --- build: a virtualenv with libs/common and this service, installed the way CI installs them.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/pulmogate
WORKDIR /src
COPY libs/common libs/common
COPY services/sender services/sender
RUN /opt/pulmogate/bin/pip install ./libs/common ./services/sender

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

USER 10001:10001
# No health endpoint in bus workers yet: the check proves PID 1 is still the pulmogate service.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["pulmogate", "health"]
ENTRYPOINT ["pulmogate"]
CMD ["sender"]
