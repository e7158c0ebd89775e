# syntax=docker/dockerfile:1
# PulmoGate inference (bus worker: chest CT analysis and DICOM outputs; /metrics on 9464). Two final targets:
#   gpu (default, last stage): NVIDIA CUDA 12.4 + cuDNN 9 runtime, Python 3.11 from the deadsnakes
#       PPA, onnxruntime-gpu in place of onnxruntime. Needs the NVIDIA driver (>= 550) and the
#       NVIDIA Container Toolkit on the host.
#   cpu: python:3.11-slim with the CPU onnxruntime, for hosts without a GPU.
# Build from the repository root:
#   docker build -f deploy/docker/inference.Dockerfile -t pulmogate/inference:0.1.0 .
#   docker build -f deploy/docker/inference.Dockerfile --target cpu -t pulmogate/inference:0.1.0-cpu .

# ---------------------------------------------------------------- CPU image
# /opt/pulmogate holds inference and what it needs, exactly as uv.lock pins them
# (scripts/install.sh: the install step of setup.sh and CI); uv stays behind in /opt/uv.
FROM python:3.11-slim-bookworm AS build-cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    UV_TOOL_VENV=/opt/uv UV_NO_CACHE=1 UV_LINK_MODE=copy
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY scripts/install.sh scripts/install.sh
COPY libs/common libs/common
COPY services/inference services/inference
RUN bash scripts/install.sh /opt/pulmogate --frozen --package pulmogate-inference --no-dev --no-editable

FROM python:3.11-slim-bookworm AS cpu
RUN groupadd --system --gid 10001 pulmogate \
 && useradd --system --uid 10001 --gid pulmogate --home-dir /data --no-create-home pulmogate \
 && mkdir -p /data \
 && chown pulmogate:pulmogate /data
COPY --from=build-cpu /opt/pulmogate /opt/pulmogate
ENV PATH=/opt/pulmogate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PULMOGATE_DATA_DIR=/data \
    PULMOGATE_LOG_FORMAT=json \
    PULMOGATE_METRICS_HOST=0.0.0.0 \
    PULMOGATE_METRICS_PORT=9464 \
    PULMOGATE_EXECUTION_PROVIDER=cpu
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9464
USER 10001:10001
# No health endpoint in bus workers yet: the check proves PID 1 is still the pulmogate service.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["pulmogate", "health"]
ENTRYPOINT ["pulmogate"]
CMD ["inference"]

# ---------------------------------------------------------------- GPU image
# Python 3.11 on the CUDA runtime image; the build and runtime stages share it so the
# virtualenv's interpreter path is the same in both.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS cuda-python
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && apt-get purge -y --auto-remove software-properties-common gpg-agent \
 && rm -rf /var/lib/apt/lists/*

# onnxruntime and onnxruntime-gpu ship the same module: the locked set with the gpu extra
# (onnxruntime-gpu) and without onnxruntime; the build fails unless the CUDA provider is in.
FROM cuda-python AS build-gpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHON=python3.11 \
    UV_TOOL_VENV=/opt/uv UV_NO_CACHE=1 UV_LINK_MODE=copy
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY scripts/install.sh scripts/install.sh
COPY libs/common libs/common
COPY services/inference services/inference
RUN bash scripts/install.sh /opt/pulmogate --frozen --package pulmogate-inference --no-dev --no-editable \
    --extra gpu --no-install-package onnxruntime \
 && /opt/pulmogate/bin/python -c "import onnxruntime as ort; assert 'CUDAExecutionProvider' in ort.get_available_providers(), ort.get_available_providers()"

FROM cuda-python AS gpu
RUN groupadd --system --gid 10001 pulmogate \
 && useradd --system --uid 10001 --gid pulmogate --home-dir /data --no-create-home pulmogate \
 && mkdir -p /data \
 && chown pulmogate:pulmogate /data
COPY --from=build-gpu /opt/pulmogate /opt/pulmogate
ENV PATH=/opt/pulmogate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PULMOGATE_DATA_DIR=/data \
    PULMOGATE_LOG_FORMAT=json \
    PULMOGATE_METRICS_HOST=0.0.0.0 \
    PULMOGATE_METRICS_PORT=9464 \
    PULMOGATE_EXECUTION_PROVIDER=auto \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9464
USER 10001:10001
# No health endpoint in bus workers yet: the check proves PID 1 is still the pulmogate service.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["pulmogate", "health"]
ENTRYPOINT ["pulmogate"]
CMD ["inference"]
