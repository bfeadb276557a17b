#!/usr/bin/env bash
# Runs vigil (API + workers + schedules) from a fresh clone: starts the local Redis if it is
# installed but stopped, builds, and runs `vigil run` with ./config.toml. Extra arguments go
# to vigil (e.g. `scripts/run.sh worker`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vigil-target}"
source scripts/services.sh
ensure_redis
# The API signs tokens with auth.jwt_secret; a fresh clone gets a random one, kept in data/.
if [ -z "${VIGIL_AUTH__JWT_SECRET:-}" ] && [ -z "${VIGIL_AUTH__JWT_SECRET_FILE:-}" ]; then
  mkdir -p data
  [ -s data/jwt_secret ] || (umask 077; head -c 48 /dev/urandom | base64 | tr -d '\n' > data/jwt_secret)
  export VIGIL_AUTH__JWT_SECRET_FILE="$PWD/data/jwt_secret"
fi
if [ "$#" -eq 0 ]; then set -- run; fi
exec cargo run --release --bin vigil -- "$@"
