# The stream worker (`coursestream worker`), CPU only.
# Build from the repository root: docker build -f deploy/docker/worker.Dockerfile -t coursestream-worker:0.1.0 .
FROM python:3.11-slim

# The worker runs no model, but the package depends on torch: the CPU build from the PyTorch
# index keeps the image gigabytes smaller than PyPI's CUDA build. Same pin as the Makefile.
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

# Installed before the project, torch satisfies its `torch>=2.2` and pip keeps this build.
COPY pyproject.toml README.md /src/
COPY online /src/online
COPY encoders /src/encoders
COPY streams /src/streams
RUN pip install /src && rm -rf /src

RUN useradd --uid 10001 --create-home coursestream \
    && mkdir -p /var/lib/coursestream \
    && chown coursestream /var/lib/coursestream

# Production settings: a Qdrant server (COURSESTREAM_QDRANT_URL) rather than the embedded
# engine, and the HTTP API (health, metrics) reachable from outside the container. Kafka is
# COURSESTREAM_KAFKA_BOOTSTRAP_SERVERS (and the SASL/SSL settings), given at run time.
ENV COURSESTREAM_DATA_DIR=/var/lib/coursestream \
    COURSESTREAM_VECTOR_STORE=qdrant \
    COURSESTREAM_WEB_HOST=0.0.0.0

# RocksDB tables: a cache of the changelog topics, rebuilt from them when the volume is new.
VOLUME /var/lib/coursestream
USER 10001
EXPOSE 6066

# Python's urllib, as slim images have no curl; the port follows COURSESTREAM_WEB_PORT.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('COURSESTREAM_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["coursestream"]
CMD ["worker"]
