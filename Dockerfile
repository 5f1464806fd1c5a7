# syntax=docker/dockerfile:1
# sandboxd's control plane as a container: a build stage compiles a release
# build, the final stage holds sandboxd and its runtime libraries only, runs
# it as an unprivileged user, keeps state on a volume and serves the ARM API
# on port 8080.  Sandboxes run on hosts with sandbox-agent, which register
# with this server; the container starts no local agent by default.
#
#   docker build -t sandboxd .
#   docker run -d -p 8080:8080 -v sandboxd-data:/var/lib/sandboxd sandboxd
#   docker exec <container> cat /var/lib/sandboxd/dev-token

FROM debian:12-slim AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev libsqlite3-dev \
        libcurl4-openssl-dev libssl-dev uuid-dev libseccomp-dev libarchive-dev libgnutls28-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DSBX_TESTS=OFF -DSBX_WITH_AGENT=OFF \
    && cmake --build /build -j"$(nproc)" --target sandboxd \
    && strip /build/sandboxd

FROM debian:12-slim
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libmicrohttpd12 libjansson4 libsqlite3-0 libcurl4 libssl3 libuuid1 libgnutls30 \
        libseccomp2 libarchive13 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sandboxd \
    && useradd --system --uid 10001 --gid sandboxd --home-dir /var/lib/sandboxd \
        --shell /usr/sbin/nologin sandboxd \
    && install -d -o sandboxd -g sandboxd -m 0700 /var/lib/sandboxd
COPY --from=build /build/sandboxd /usr/local/bin/sandboxd

# Every flag has an environment variable; these make the defaults fit a
# container.  Set SANDBOXD_AUTH_TOKEN, or read the generated dev-token from
# the volume; set SANDBOXD_TLS_CERT/SANDBOXD_TLS_KEY to serve HTTPS.
ENV SANDBOXD_LISTEN=0.0.0.0:8080 \
    SANDBOXD_DATA_DIR=/var/lib/sandboxd \
    SANDBOXD_NO_LOCAL_AGENT=1
VOLUME ["/var/lib/sandboxd"]
EXPOSE 8080
USER sandboxd:sandboxd
WORKDIR /var/lib/sandboxd
# /healthz needs no token; -k because a TLS certificate may be self-signed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/healthz \
        || curl -fsSk -o /dev/null https://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sandboxd"]
