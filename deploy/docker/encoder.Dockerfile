# The encoder service (`coursestream encoder`) on an NVIDIA GPU.
# Build from the repository root: docker build -f deploy/docker/encoder.Dockerfile -t coursestream-encoder:0.1.0 .
#
# What is pinned, and how:
# - every dependency but torch: exact versions and sha256 hashes in requirements.lock
#   (pip --require-hashes: a changed file on the index fails the build);
# - torch: the Makefile's version from PyPI, whose Linux wheel is the CUDA build and pins its
#   nvidia-* CUDA libraries (and triton) to exact versions; these come by version only, not
#   hash: the project's CPU-only machines cannot resolve that build to lock it;
# - the base image: by tag.
# The host provides the NVIDIA driver (new enough for that torch's CUDA), which the NVIDIA
# Container Toolkit mounts into the container.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY deploy/docker/requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock && rm /tmp/requirements.lock
RUN pip install "torch==${TORCH_VERSION}"

# The project itself, with what is installed above and nothing else (pip check proves it complete).
COPY pyproject.toml README.md /src/
COPY online /src/online
COPY encoders /src/encoders
COPY streams /src/streams
RUN pip install --no-deps --no-build-isolation /src && rm -rf /src && pip check

RUN useradd --uid 10001 --user-group --no-create-home coursestream && mkdir -p /media

# The driver libraries the toolkit must mount.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
# Listen beyond the container, which needs COURSESTREAM_ENCODER_TOKEN (a file in
# COURSESTREAM_SECRETS_DIR): the service refuses to start without it. `cuda`, not `auto`: without
# a usable GPU the models fail to load and /readyz says so, instead of the service quietly
# running on the CPU. Media by path are read from /media only (mount yours there, read-only);
# media by URL need COURSESTREAM_ENCODER_MEDIA_HOSTS, given at run time.
ENV COURSESTREAM_ENCODER_HOST=0.0.0.0 \
    COURSESTREAM_ENCODER_PORT=8001 \
    COURSESTREAM_ENCODER_DEVICE=cuda \
    COURSESTREAM_ENCODER_MEDIA_ROOT=/media \
    COURSESTREAM_SECRETS_DIR=/run/secrets \
    HOME=/tmp

USER 10001
EXPOSE 8001

# /readyz: 200 once the models are loaded and warmed up (503 while loading or after a failure).
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('COURSESTREAM_ENCODER_PORT', '8001'), timeout=4)"]

ENTRYPOINT ["coursestream"]
CMD ["encoder"]
