# syntax=docker/dockerfile:1
# ringside container image: the daemon and ringctl on debian:bookworm-slim, non-root.
#
#   docker build -t ringside:0.1.0 .
#   docker run --rm -v $PWD/configs/demo.json:/etc/ringside/config.json:ro ringside:0.1.0
#
# The Helm chart (helm/ringside) runs it as uid 10001 with a read-only root filesystem;
# the config comes from a ConfigMap at /etc/ringside/config.json, the socket directory
# (/run/ringside) and state_dir (/var/lib/ringside) are volumes.
#
# Not built in this project's CI: its machines have the docker client but no engine.
# Keep it to plain Debian packages and the project's own CMake build.

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential cmake ninja-build pkg-config python3 \
        libuv1-dev libjansson-dev libhiredis-dev libcurl4-openssl-dev libssl-dev \
        libxxhash-dev libcmocka-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# CMake wants cmocka and python3 for the test targets; only the two programs are built.
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build /build --target ringside ringctl \
 && strip /build/sidecar/ringside /build/sidecar/ringctl \
 && /build/sidecar/ringside --version

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        libuv1 libjansson4 libhiredis0.14 libcurl4 libssl3 libxxhash0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ringside \
 && useradd --system --uid 10001 --gid ringside --home-dir /var/lib/ringside \
        --no-create-home --shell /usr/sbin/nologin ringside \
 && install -d -o ringside -g ringside -m 0750 /run/ringside /var/lib/ringside \
 && install -d -m 0755 /etc/ringside
COPY --from=build /build/sidecar/ringside /build/sidecar/ringctl /usr/local/bin/
COPY configs/static.json /etc/ringside/config.json
USER ringside:ringside
ENV RINGSIDE_SOCKET=/run/ringside/ringside.sock
VOLUME ["/run/ringside", "/var/lib/ringside"]
EXPOSE 9317
ENTRYPOINT ["ringside"]
CMD ["--config", "/etc/ringside/config.json"]
