# vigil, built in a full Rust image and run from a small Debian one.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vigil \
 && cp target/release/vigil /usr/local/bin/vigil

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/vigil --create-home vigil
COPY --from=build /usr/local/bin/vigil /usr/local/bin/vigil
COPY config.toml /etc/vigil/config.toml
USER vigil
WORKDIR /var/lib/vigil
# SQLite (when no other database is set) lives in the vigil user's home, not next to the
# read-only config file.
ENV VIGIL_CONFIG=/etc/vigil/config.toml \
    VIGIL_DATABASE__URL=sqlite:///var/lib/vigil/data/vigil.db \
    VIGIL_LOG__FORMAT=json \
    VIGIL_HTTP__LISTEN=0.0.0.0:8080 \
    VIGIL_WORKER__LISTEN=0.0.0.0:8081
EXPOSE 8080 8081
# No shell or curl needed: the binary probes its own /health.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=6 CMD ["vigil", "healthcheck"]
ENTRYPOINT ["vigil"]
CMD ["run"]
