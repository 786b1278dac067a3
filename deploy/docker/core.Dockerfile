# The Vivified core, built from the wheel. Build from the repository root:
#   docker build -f deploy/docker/core.Dockerfile -t vivified-core:0.1.0 .
# Runs as uid 10001 with no shell: the final stage is distroless (Python 3.11, the
# interpreter the wheel's compiled dependencies are built for here) and holds only the
# installed package under /opt/vivified. Run it with a read-only root filesystem
# (compose `read_only: true`, Kubernetes `readOnlyRootFilesystem: true`); the data dir
# /var/lib/vivified and /tmp are the only writable mounts it needs.

FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen gen
COPY core core
COPY sdk/python sdk/python
COPY plugins plugins
COPY tools/bench tools/bench
COPY proto proto
RUN python -m pip wheel --no-deps --no-cache-dir -w /wheels . \
 && python -m pip install --no-cache-dir --target /opt/vivified /wheels/vivified-*.whl \
 && python -m compileall -q /opt/vivified \
 && mkdir -p /owned/var/lib/vivified && chown 10001:10001 /owned/var/lib/vivified && chmod 0700 /owned/var/lib/vivified

FROM gcr.io/distroless/python3-debian12:nonroot
COPY --from=wheel /opt/vivified /opt/vivified
# The data dir, owned by the core's uid (a named volume mounted here takes this ownership).
COPY --from=wheel /owned/ /
ENV PYTHONPATH=/opt/vivified \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIVIFIED_DATA_DIR=/var/lib/vivified \
    VIVIFIED_LISTEN_ADDRESS=0.0.0.0:7443 \
    VIVIFIED_BOOTSTRAP_ADDRESS=0.0.0.0:7444 \
    VIVIFIED_METRICS_ADDRESS=0.0.0.0:9464 \
    VIVIFIED_PROFILE=production
USER 10001:10001
WORKDIR /var/lib/vivified
EXPOSE 7443 7444 9464
# grpc.health.v1 on the bootstrap port over TLS (exit 0 = SERVING); the same check as `vivified health`,
# from a module that imports only grpc, so a probe every few seconds stays cheap.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/bin/python3", "-m", "vivified.core.probe", "--address", "127.0.0.1:7444"]
ENTRYPOINT ["/usr/bin/python3", "-m", "vivified.core.cli"]
CMD ["core"]
