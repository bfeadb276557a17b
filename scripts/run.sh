#!/usr/bin/env bash
# Runs vigil (API + workers + schedules) from a fresh clone: makes sure Redis answers on
# 127.0.0.1:6379 (starts it, or installs it with apt when it is missing and it can),
# creates a JWT signing secret in data/ on first run, builds once in release mode, and runs
# target/release/vigil with ./config.toml. Arguments go to vigil, so the same script adds a
# user without another build:
#   scripts/run.sh                              # vigil run
#   scripts/run.sh user add admin --role admin  # or: target/release/vigil user add ...
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
if [ "$#" -eq 0 ]; then set -- run; fi
# Only the daemons need Redis up front; `user add` audits through it when it is there.
case "$1" in run|worker|api) ensure_redis ;; esac
# The API signs tokens with auth.jwt_secret; a fresh clone gets a random one, kept in data/.
if [ -z "${VIGIL_AUTH__JWT_SECRET:-}" ] && [ -z "${VIGIL_AUTH__JWT_SECRET_FILE:-}" ]; then
  mkdir -p data
  [ -s data/jwt_secret ] || (umask 077; head -c 48 /dev/urandom | base64 | tr -d '\n' > data/jwt_secret)
  export VIGIL_AUTH__JWT_SECRET_FILE="$PWD/data/jwt_secret"
fi
# The repository's own target/ (not a shared CARGO_TARGET_DIR), so target/release/vigil is
# where the README says; a second run finds it built.
target="${VIGIL_TARGET_DIR:-$PWD/target}"
CARGO_TARGET_DIR="$target" cargo build --release --quiet --bin vigil
exec "$target/release/vigil" "$@"
