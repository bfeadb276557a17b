#!/usr/bin/env bash
# The whole test suite, from a fresh clone: starts Redis/PostgreSQL if needed, installs the
# test tools, then runs every test of every crate (unit, integration, process-level, API).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vigil-target}"
source scripts/services.sh
# The topology tests (TLS, Cluster, Sentinel) start their own redis-server processes.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "installing redis-server and redis-tools" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools
fi
ensure_redis
ensure_postgres

# Browser tests drive Debian's Chromium through chromedriver.
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  echo "installing chromium and chromium-driver" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install cargo-nextest --locked
fi

began=$SECONDS
cargo nextest run --workspace --no-fail-fast "$@"
echo "== nextest wall time: $((SECONDS - began)) s (builds included)"

# Property-based API checks against the running binary's OpenAPI document.
if [ -x api/tests/schemathesis.sh ]; then
  api/tests/schemathesis.sh
fi
echo "== test suite wall time: $((SECONDS - began)) s"
