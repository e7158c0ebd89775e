# syntax=docker/dockerfile:1
# PulmoGate inference (bus worker: chest CT analysis and DICOM outputs). Two final targets:
#   gpu (default, last stage): NVIDIA CUDA 12.4 + cuDNN 9 runtime, Python 3.11 from the deadsnakes
#       PPA, onnxruntime-gpu in place of onnxruntime. Needs the NVIDIA driver (>= 550) and the
#       NVIDIA Container Toolkit on the host.
#   cpu: python:3.11-slim with the CPU onnxruntime, for hosts without a GPU.
# Build from the repository root:
#   docker build -f deploy/docker/inference.Dockerfile -t pulmogate/inference:0.1.0 .
#   docker build -f deploy/docker/inference.Dockerfile --target cpu -t pulmogate/inference:0.1.0-cpu .

# ---------------------------------------------------------------- CPU image
FROM python:3.11-slim-bookworm AS build-cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/pulmogate
WORKDIR /src
COPY libs/common libs/common
COPY services/inference services/inference
RUN /opt/pulmogate/bin/pip install ./libs/common ./services/inference

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
    PULMOGATE_EXECUTION_PROVIDER=cpu
WORKDIR /data
VOLUME ["/data"]
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

FROM cuda-python AS build-gpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3.11 -m venv /opt/pulmogate
WORKDIR /src
COPY libs/common libs/common
COPY services/inference services/inference
# onnxruntime and onnxruntime-gpu ship the same module: install the member, then swap the wheel,
# and fail the build unless the CUDA provider is compiled in.
RUN /opt/pulmogate/bin/pip install ./libs/common ./services/inference \
 && /opt/pulmogate/bin/pip uninstall -y onnxruntime \
 && /opt/pulmogate/bin/pip install "onnxruntime-gpu>=1.19,<2" \
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
    PULMOGATE_EXECUTION_PROVIDER=auto \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
# No health endpoint in bus workers yet: the check proves PID 1 is still the pulmogate service.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["pulmogate", "health"]
ENTRYPOINT ["pulmogate"]
CMD ["inference"]
