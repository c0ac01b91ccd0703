# The `orch` image used by docker-compose.yml: the CLI with the platform's assets compiled in,
# DuckDB's libduckdb.so beside it, and the platform's dbt project with dbt in a venv.
#   docker build -t orch .
#   docker run --rm orch orch --help
# scripts/image-rootfs assembles this image's last stage without Docker (and scripts/image-check
# runs the platform in it): it reads the dbt and runtime stages below, so keep their instructions
# to FROM debian:bookworm-slim, RUN, COPY, ENV k=v, WORKDIR, USER, ENTRYPOINT and CMD, with RUN
# before USER. The build stage is not run there: the host's `orch` and libduckdb.so stand in
# for its /out/bin.

# The binary. libduckdb.so comes from scripts/ensure-libduckdb (run by warehouse/build.rs),
# which fetches it with curl and checks its pinned sha512: this image has no npm.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p orch-cli \
    && mkdir -p /out/bin \
    && cp target/release/orch target/release/libduckdb.so /out/bin/

# dbt in a venv, built on the runtime's Python (Debian's python3 3.11), so that it runs where
# it is copied. scripts/dbt-venv holds the pins (dbt-core and dbt-duckdb 1.11, duckdb 1.5.6).
FROM debian:bookworm-slim AS dbt
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv && rm -rf /var/lib/apt/lists/*
COPY scripts/dbt-venv /usr/local/bin/dbt-venv
RUN ORCH_DBT_VENV=/opt/orch/dbt-venv PIP_NO_CACHE_DIR=1 dbt-venv

# The image: orch and libduckdb.so side by side in /opt/orch/bin (orch finds the library by
# its rpath $ORIGIN, which resolves through the /usr/local/bin/orch symlink to the real
# file's folder), dbt's venv, the dbt project, and the non-root user `orch` (uid 10001) owning
# the working folder /project.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 orch \
    && useradd --uid 10001 --gid orch --home-dir /project --no-create-home --shell /usr/sbin/nologin orch \
    && install -d -o orch -g orch /project \
    && ln -s /opt/orch/bin/orch /usr/local/bin/orch
COPY --from=build /out/bin/ /opt/orch/bin/
COPY --from=dbt /opt/orch/dbt-venv/ /opt/orch/dbt-venv/
COPY dbt/ /opt/orch/dbt/
COPY docker/orch.toml /project/orch.toml
ENV ORCH_DBT=/opt/orch/dbt-venv/bin/dbt
WORKDIR /project
USER orch
ENTRYPOINT []
CMD ["orch", "--help"]
