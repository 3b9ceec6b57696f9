# obol-node (and obol-wallet) in a container: docs/deploy.md.
# Build: docker build -t obol .   Run: a chain spec mounted at /etc/obol/chain.toml, a volume at /data.

# --- build: compile the C extensions and install the package into a venv ---------------------
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY setup.py setup.cfg pyproject.toml README.md ./
COPY node ./node
COPY network ./network
COPY wallet ./wallet
COPY scripts ./scripts
RUN python -m venv /opt/obol \
    && /opt/obol/bin/pip install --no-cache-dir . \
    && /opt/obol/bin/python -c "import node.primitives._formatcheck, node.consensus._sigbatch"

# --- runtime: the venv only, a non-root user, the datadir a volume -----------------------------
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin obol \
    && mkdir -p /data /etc/obol \
    && chown obol:obol /data
COPY --from=build /opt/obol /opt/obol
ENV PATH=/opt/obol/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OBOL_CHAIN=/etc/obol/chain.toml \
    OBOL_DATADIR=/data \
    OBOL_LISTEN=0.0.0.0:19333 \
    OBOL_API=0.0.0.0:19332 \
    OBOL_LOG_JSON=1
USER obol
VOLUME /data
EXPOSE 19333 19332
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:19332/api/v1/status', timeout=4)"]
ENTRYPOINT ["obol-node"]
CMD []
