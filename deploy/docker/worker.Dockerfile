# The stream worker (`coursestream worker`), CPU only.
# Build from the repository root: docker build -f deploy/docker/worker.Dockerfile -t coursestream-worker:0.1.0 .
#
# What is pinned, and how:
# - every dependency but torch: exact versions and sha256 hashes in requirements.lock
#   (pip --require-hashes: a changed file on the index fails the build);
# - torch: the CPU build of the Makefile's version from the PyTorch index, by version only (that
#   wheel's hash is not in the lock: the project's machines cannot fetch the PyTorch index);
# - the base image: by tag.
FROM python:3.11-slim

# The worker runs no model, but the package depends on torch: the CPU build keeps the image
# gigabytes smaller than PyPI's CUDA build. Same pin as the Makefile.
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY deploy/docker/requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock && rm /tmp/requirements.lock
RUN pip install --no-deps --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

# The project itself, with what is installed above and nothing else (pip check proves it complete).
COPY pyproject.toml README.md /src/
COPY online /src/online
COPY encoders /src/encoders
COPY streams /src/streams
RUN pip install --no-deps --no-build-isolation /src && rm -rf /src && pip check

RUN useradd --uid 10001 --user-group --no-create-home coursestream \
    && mkdir -p /var/lib/coursestream \
    && chown coursestream /var/lib/coursestream

# Production settings: a Qdrant server (COURSESTREAM_QDRANT_URL) rather than the embedded
# engine, and the HTTP API (health, metrics, learners' data) reachable from outside the
# container, which needs COURSESTREAM_WEB_TOKEN: the worker refuses to start without it. Kafka is
# COURSESTREAM_KAFKA_BOOTSTRAP_SERVERS (and the SASL/SSL settings), given at run time; secrets
# are files in COURSESTREAM_SECRETS_DIR.
ENV COURSESTREAM_DATA_DIR=/var/lib/coursestream \
    COURSESTREAM_VECTOR_STORE=qdrant \
    COURSESTREAM_WEB_HOST=0.0.0.0 \
    COURSESTREAM_SECRETS_DIR=/run/secrets

# numba's compiled kernels are cached on /tmp: the deployments run with a read-only root filesystem.
ENV NUMBA_CACHE_DIR=/tmp/numba

# RocksDB tables: a cache of the changelog topics, rebuilt from them when the volume is new.
VOLUME /var/lib/coursestream
USER 10001
EXPOSE 6066

# Python's urllib, as slim images have no curl; the port follows COURSESTREAM_WEB_PORT.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('COURSESTREAM_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["coursestream"]
CMD ["worker"]
