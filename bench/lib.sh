# Shared by the bench scripts (source it): a private redis-server, the binary to measure,
# Debian installs, a JSON field and a median.

# A TCP port on 127.0.0.1 nothing listens on, below the kernel's range for outgoing
# connections (32768 and up), so one held by a client cannot pass the probe and then fail.
free_port() {
  while :; do
    p=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# start_redis DIR: a redis-server without persistence in DIR on a free port; sets PORT and
# REDIS_PID, and exits the script when it does not answer within 5 s.
start_redis() {
  PORT="$(free_port)"
  redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$1" \
    --logfile "$1/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 1 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && return; sleep 0.05; done
  echo "redis-server on $PORT did not start (log: $1/redis.log)" >&2
  exit 1
}

# median "v1 v2 ...": the middle value (the lower middle of an even count).
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# redis_settled PORT: waits (up to 60 s) until the server on PORT has freed everything a previous
# run deleted. `vigil bench` removes its keys with UNLINK, which frees them on Redis's
# background thread: that CPU time and memory would otherwise land in the next run's
# `INFO` readings.
redis_settled() {
  for _ in $(seq 1 1200); do
    [ "$(redis-cli -p "$1" info memory | tr -d '\r' | sed -n 's/^lazyfree_pending_objects://p')" = 0 ] && return
    sleep 0.05
  done
  echo "redis-server on $1 still freeing after 60 s" >&2
  exit 1
}

# vigil_binary: sets VIGIL to the binary to measure: $VIGIL when given, else a release build
# (cargo build --release --bin vigil, CARGO_TARGET_DIR outside the clone).
vigil_binary() {
  if [ -z "${VIGIL:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/vigil-target}"
    cargo build --release --bin vigil
    VIGIL="$CARGO_TARGET_DIR/release/vigil"
  fi
}

# apt_install PACKAGE...: Debian packages (sudo when not root; the package lists refreshed
# once if the first try fails).
apt_install() {
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "$@" \
    || { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "$@"; }
}

# field NAME LINE: the value of NAME in a one-line JSON object (a number or a plain string).
field() { sed -E "s/.*\"$1\":\"?([^,\"}]*).*/\1/" <<<"$2"; }

# private_redis: a scratch directory WORK and a private redis-server in it (PORT), both
# removed when the script exits. For scripts with nothing else to clean up.
private_redis() {
  WORK="$(mktemp -d)"
  REDIS_PID=""
  trap 'if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; fi; rm -rf "$WORK"' EXIT
  start_redis "$WORK"
}
