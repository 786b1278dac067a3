# The base image for Python plugins, built from the same wheel (it holds the SDK and the
# bundled reference plugins). Build from the repository root:
#   docker build -f deploy/docker/plugin-base.Dockerfile -t vivified-plugin-base:0.1.0 .
# Run a bundled plugin:  docker run ... vivified-plugin-base:0.1.0 vivified.plugins.example_echo
# Your own plugin: build its wheel in a builder stage, `pip install --target /opt/plugin` it
# there (its dependencies included), then
#   FROM vivified-plugin-base:0.1.0
#   COPY --from=builder /opt/plugin /opt/plugin
#   CMD ["your_plugin"]
# Runs as uid 10001 with no shell or package manager (distroless); give it a read-only root
# filesystem, its own writable data dir (VIVIFIED_DATA_DIR) and /tmp.

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
 && mkdir -p /opt/plugin /owned/var/lib/plugin && chown 10001:10001 /owned/var/lib/plugin && chmod 0700 /owned/var/lib/plugin

FROM gcr.io/distroless/python3-debian12:nonroot
COPY --from=wheel /opt/vivified /opt/vivified
COPY --from=wheel /opt/plugin /opt/plugin
# The plugin's data dir, owned by its uid (a volume mounted here takes this ownership).
COPY --from=wheel /owned/ /
ENV PYTHONPATH=/opt/plugin:/opt/vivified \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIVIFIED_LISTEN_HOST=0.0.0.0
USER 10001:10001
WORKDIR /var/lib/plugin
# The argument is the plugin's module: `python -m <module>`.
ENTRYPOINT ["/usr/bin/python3", "-m"]
CMD ["vivified.plugins.example_echo"]
