# The encoder service (`coursestream encoder`) on an NVIDIA GPU.
# Build from the repository root: docker build -f deploy/docker/encoder.Dockerfile -t coursestream-encoder:0.1.0 .
#
# The base is the worker's python:3.11-slim rather than an nvidia/cuda or pytorch/pytorch
# image: PyPI's torch wheels for Linux carry their CUDA user space (runtime, cuBLAS, cuDNN,
# NCCL) as pip packages, so a CUDA base image would only duplicate gigabytes of libraries,
# and Ubuntu 22.04 (the CUDA images' base) has no maintained Python 3.11. The host provides
# only the NVIDIA driver, which the NVIDIA Container Toolkit mounts into the container.
FROM python:3.11-slim

# torch 2.13 from PyPI is built for CUDA 13.0: it needs an NVIDIA driver >= 580. For an older
# driver, build with a CUDA 12 wheel from the PyTorch index, e.g.
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://pypi.org/simple

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# Installed before the project, torch satisfies its `torch>=2.2` and pip keeps this build.
COPY pyproject.toml README.md /src/
COPY online /src/online
COPY encoders /src/encoders
COPY streams /src/streams
RUN pip install /src && rm -rf /src

RUN useradd --uid 10001 --create-home coursestream

# What the nvidia/cuda images declare: the driver libraries the toolkit must mount.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
# Listen beyond the container; `cuda`, not `auto`: without a usable GPU the models fail to
# load and /readyz says so, instead of the service quietly running on the CPU.
ENV COURSESTREAM_ENCODER_HOST=0.0.0.0 \
    COURSESTREAM_ENCODER_PORT=8001 \
    COURSESTREAM_ENCODER_DEVICE=cuda

USER 10001
EXPOSE 8001

# /readyz: 200 once the models are loaded and warmed up (503 while loading or after a failure).
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('COURSESTREAM_ENCODER_PORT', '8001'), timeout=4)"]

ENTRYPOINT ["coursestream"]
CMD ["encoder"]
