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
ENV VIGIL_CONFIG=/etc/vigil/config.toml \
    VIGIL_LOG__FORMAT=json \
    VIGIL_HTTP__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["vigil"]
CMD ["run"]
