#!/usr/bin/env bash
# gisgate side by side with nginx, HAProxy and the upstream hit directly,
# using the shared harness (../shared/bench): one interleaved run, bounded
# load runs, loopback only.
#
#   bench/run.sh [harness run.sh options]      e.g. bench/run.sh -r 3 -t "ka1k ka64k hs hsr h2"
#   WORKERS=2 bench/run.sh                       2 workers for every proxy
#   SERVER_CPUS=0 bench/run.sh --client-cpus 1   pinned: servers on CPU 0, load on CPU 1
#
# Needs (Debian): nginx haproxy wrk nghttp2-client, and the Rust toolchain.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORKERS="${WORKERS:-1}"
KEEPALIVE="${PEER_KEEPALIVE:-64}"
SERVER_CPUS="${SERVER_CPUS:-}"
harness_copy

(cd "$ROOT" && cargo build --release --quiet)
BIN="$ROOT/target/release/gisgate"

"$H/stop-peers.sh" >/dev/null 2>&1 || true
WORKERS="$WORKERS" PEER_KEEPALIVE="$KEEPALIVE" SERVER_CPUS="$SERVER_CPUS" "$H/start-peers.sh"

gisgate_config "$WORKERS" "$KEEPALIVE"
"$BIN" check --config "$WORK/gisgate.toml" >/dev/null
ports_free
TASKSET=()
[ -n "$SERVER_CPUS" ] && TASKSET=(taskset -c "$SERVER_CPUS")
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"${TASKSET[@]}" "$BIN" run --config "$WORK/gisgate.toml" 2> "$WORK/gisgate.log" &
GISGATE_PID=$!
echo "$GISGATE_PID" > "$WORK/gisgate.pid"
cleanup() {
  kill -TERM "$GISGATE_PID" 2>/dev/null || true
  wait "$GISGATE_PID" 2>/dev/null || true
  "$H/stop-peers.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT
wait_ready "$GISGATE_PID" "$WORK/gisgate.log"

TARGETS=(direct=https://127.0.0.1:16443 nginx=https://127.0.0.1:17443)
ss -Hltn "sport = :18443" | grep -q . && TARGETS+=(haproxy=https://127.0.0.1:18443)
TARGETS+=(gisgate=https://127.0.0.1:19443)
OUT="${OUT:-$WORK/results/$(date +%Y%m%d-%H%M%S)-w$WORKERS}" \
  "$H/run.sh" --ref nginx "$@" "${TARGETS[@]}"
