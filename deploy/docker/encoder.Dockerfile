# The encoder service (`coursestream encoder`) on an NVIDIA GPU.
# Build from the repository root: docker build -f deploy/docker/encoder.Dockerfile -t coursestream-encoder:0.1.0 .
#
# The base is PyTorch's official CUDA runtime image: CUDA 12.4 and cuDNN 9 user space, Python
# 3.11 and torch 2.5.1 with GPU kernels already in it. The project asks for torch>=2.2, so
# pip keeps that build and installs only the rest. The host provides the NVIDIA driver (>= 550
# for CUDA 12.4), which the NVIDIA Container Toolkit mounts into the container.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The image's torch satisfies the project's `torch>=2.2`: pip keeps it.
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
