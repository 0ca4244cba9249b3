# sssn-server on the embedded store; mount a volume at /data to keep it.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 sssn \
 && mkdir /data && chown sssn:sssn /data

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY tools ./tools
COPY protos ./protos
COPY sssn_proto/__init__.py ./sssn_proto/__init__.py
COPY sssn_proto/v1/__init__.py ./sssn_proto/v1/__init__.py
COPY sssn_server ./sssn_server
# The build generates sssn_proto/v1 from protos/ (grpcio-tools at build time).
RUN pip install --no-cache-dir '.[server]' && rm -rf /src

USER sssn
WORKDIR /home/sssn
VOLUME ["/data"]
EXPOSE 7700
ENV SSSN_HOST=0.0.0.0 SSSN_PORT=7700 SSSN_STORE=/data
# Asks the standard grpc.health.v1 service; NOT_SERVING while draining.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-m", "sssn_server.healthcheck"]
# Runs as PID 1 and handles SIGTERM itself: drain, then exit 0.
ENTRYPOINT ["sssn-server"]
