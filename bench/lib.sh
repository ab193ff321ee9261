# Shared by the bench scripts: their paths, the harness copy, gisgate's
# config, and starting gisgate only on free ports and waiting until *this*
# gisgate is ready.

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
WORK="${BENCH_WORK:-/tmp/gisgate-bench}"
H="$WORK/harness"
export RUN_DIR="${RUN_DIR:-/tmp/gisbench}"

# The shared harness writes its PKI and results beside itself: run a copy.
harness_copy() {
  mkdir -p "$H"
  cp -r "$SHARED/." "$H/"
  chmod -R u+w "$H"
  [ -f "$H/pki/ca.crt" ] || "$H/pki.sh"
}

# gisgate_config WORKERS KEEPALIVE [h2up]: $WORK/gisgate.toml, set up like
# the peers (HTTP/1.1 to the upstream, as they speak); with h2up,
# $WORK/gisgate-h2up.toml: the same on ports 19543/19180/19190 with
# upstream.prefer_http2, so requests reach the upstream multiplexed over
# HTTP/2 (which the harness's upstream offers).
gisgate_config() {
  local name=gisgate https=19443 http=19080 obs=19090 h2=false
  if [ "${3:-}" = h2up ]; then
    name=gisgate-h2up https=19543 http=19180 obs=19190 h2=true
  fi
  sed -e "s|@PKI@|$H/pki|g" -e "s|@WORKERS@|$1|g" -e "s|@KEEPALIVE@|$2|g" \
    -e "s|@HTTPS@|$https|g" -e "s|@HTTP@|$http|g" -e "s|@OBS@|$obs|g" \
    -e "s|@PREFER_HTTP2@|$h2|g" \
    "$BENCH/gisgate.bench.toml.in" > "$WORK/$name.toml"
}

# A gateway from an earlier run may still be draining: a new one could not
# bind, and the old one would answer the readiness check (or be measured).
# ports_free [PORT...] (default: the first gisgate's 19443 19080 19090)
ports_free() {
  local port ports=("$@")
  [ ${#ports[@]} -gt 0 ] || ports=(19443 19080 19090)
  for port in "${ports[@]}"; do
    for _ in $(seq 1 50); do ss -Hltn "sport = :$port" | grep -q . || break; sleep 0.2; done
    if ss -Hltn "sport = :$port" | grep -q .; then
      echo "port $port is still in use (an earlier gisgate?): stop it first" >&2
      return 1
    fi
  done
}

# wait_ready PID LOG [OBSERVABILITY_PORT]
wait_ready() {
  for _ in $(seq 1 50); do
    kill -0 "$1" 2>/dev/null || { echo "gisgate exited, see $2" >&2; return 1; }
    curl -sf -o /dev/null "http://127.0.0.1:${3:-19090}/readyz" && return 0
    sleep 0.2
  done
  echo "gisgate not ready after 10 s, see $2" >&2
  return 1
}
