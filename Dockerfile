# The `orch` image used by docker-compose.yml: the CLI with the platform's assets compiled in.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p orch-cli && cp target/release/orch /usr/local/bin/orch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/orch /usr/local/bin/orch
WORKDIR /project
ENTRYPOINT []
CMD ["orch", "--help"]
