#!/usr/bin/env bash
# Runs vigil (API + workers + schedules) from a fresh clone: starts the local Redis if it is
# installed but stopped, builds, and runs `vigil run` with ./config.toml. Extra arguments go
# to vigil (e.g. `scripts/run.sh worker`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vigil-target}"
source scripts/services.sh
ensure_redis
if [ "$#" -eq 0 ]; then set -- run; fi
exec cargo run --release --bin vigil -- "$@"
