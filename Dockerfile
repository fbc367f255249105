# syntax=docker/dockerfile:1
# The prefsum service: serves the ONNX bundles mounted at /models (never baked in) on port 8000.
#
#   docker build -t prefsum .                     # default target "gpu": CUDA runtime, CUDA torch, onnxruntime-gpu
#   docker build --target cpu -t prefsum:cpu \
#     --build-arg TORCH_INDEX_URL=<the PyTorch CPU wheel index> .     # CPU only (without the index: pip's default)
#   docker run --gpus all -p 8000:8000 -v "$PWD/runs/tiny/bundles:/models:ro" -v prefsum-data:/data prefsum
#
# Both targets install exactly as `make install` does, through scripts/install.sh (torch first from its pin in
# requirements/constraints.txt, then requirements/runtime.txt against the constraints, then prefsum itself).

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------- the sources, once
FROM scratch AS source
COPY pyproject.toml README.md /app/
COPY requirements/ /app/requirements/
COPY scripts/install.sh /app/scripts/install.sh
COPY prefsum/ /app/prefsum/
COPY training/ /app/training/
COPY service/ /app/service/
COPY evals/ /app/evals/
COPY configs/ /app/configs/

# ---------------------------------------------------------------------------------------------- bases
FROM ${PYTHON_IMAGE} AS cpu-base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 prefsum \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin prefsum \
    && mkdir -p /data \
    && chown 10001:10001 /data

FROM ${CUDA_IMAGE} AS gpu-base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive
# Python 3.11 from Ubuntu 22.04's own archive; versions follow the base image (pinning them would break its updates).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /usr/bin/python3.11 /usr/local/bin/python \
    && groupadd --gid 10001 prefsum \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin prefsum \
    && mkdir -p /data \
    && chown 10001:10001 /data

# ---------------------------------------------------------------------------------------------- builds
FROM cpu-base AS cpu-build
ARG TORCH_INDEX_URL=""
COPY --from=source /app /app
WORKDIR /app
RUN python -m venv /opt/venv \
    && TORCH_INDEX_URL="$TORCH_INDEX_URL" bash scripts/install.sh /opt/venv/bin/python --editable

FROM gpu-base AS gpu-build
ARG TORCH_INDEX_URL=""
COPY --from=source /app /app
WORKDIR /app
RUN python -m venv /opt/venv \
    && TORCH_INDEX_URL="$TORCH_INDEX_URL" bash scripts/install.sh /opt/venv/bin/python --editable

# ---------------------------------------------------------------------------------------------- images
FROM cpu-base AS cpu
COPY --from=cpu-build /opt/venv /opt/venv
COPY --from=cpu-build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PREFSUM_DB=/data/prefsum.db
# the prefsum user made in the base stage (uid 10001): the service never runs as root
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["prefsum", "serve", "--bundles", "/models", "--host", "0.0.0.0"]

FROM gpu-base AS gpu
COPY --from=gpu-build /opt/venv /opt/venv
COPY --from=gpu-build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PREFSUM_DB=/data/prefsum.db
# the prefsum user made in the base stage (uid 10001): the service never runs as root
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["prefsum", "serve", "--bundles", "/models", "--host", "0.0.0.0"]
